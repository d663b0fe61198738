"""A random validation split that keeps a block split's test slices: the upstream project's kind of split, for measuring
how much it inflates the validation Dice (README, "How much a random split inflates Dice").

    python bench/random_split.py runs/lite0_smp_cl45/split.csv runs/random_split_keep_block_test.csv

The test rows stay as they are (patients no model saw); as many validation rows as the block split had are drawn at
random (seed 42) from the rest, which becomes training."""
import sys
import numpy as np, pandas as pd

def random_validation(split: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pool = split.index[split.split != 'test'].to_numpy()
    valid = rng.choice(pool, size=int((split.split == 'valid').sum()), replace=False)
    out = split.copy()
    out.loc[pool, 'split'] = 'train'
    out.loc[valid, 'split'] = 'valid'
    return out

if __name__ == '__main__':
    src, dest = sys.argv[1:3]
    s = random_validation(pd.read_csv(src))
    s.to_csv(dest, index=False)
    print(dest, s.split.value_counts().to_dict())
