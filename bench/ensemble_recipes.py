"""Do the recipes miss the same slices? Models trained on one split, scored alone and as an ensemble of their probabilities.

    python bench/ensemble_recipes.py runs/recipes/lite1_smp runs/recipes/lite0_unetpp runs/recipes/lite0_smp_256_e5 \
        --out bench/results/recipes_ensemble.csv

The run folders must share one split (their split.csv files are compared). Each model scores the validation and test
sides at the images' own size, at its card's threshold; the ensemble averages the models' probability maps (each model
at its own input size, resized back to the image) and thresholds the mean at 0.5. Besides the usual figures, each row
counts the slices under Dice 0.1, and the ensemble's rows count the slices under 0.1 for every model alone
(`missed_by_all`) and for at least one (`missed_by_any`). Each model's figures are checked against its eval.json.
`Segmenter`'s own ensembles (fold models) share one input size, so the members are averaged here instead.
An ensemble costs the training of all its members, so it is not a recipe for the 45-minute budget: it measures how
far the models' mistakes differ. A measurement, not a test.
"""
import argparse, filecmp, json
from pathlib import Path
import numpy as np, pandas as pd

from bts_nb.evaluate import evaluate_dataset
from bts_nb.metrics import image_metrics, summarize_metrics
from bts_nb.readers import read_mask
from bts_nb.splits import load_split
from cv_threshold import RecordingSegmenter        # bench/, beside this script


def figures(t:pd.DataFrame, model:str, side:str) -> dict:
    s = summarize_metrics(t)
    return dict(model=model, side=side, n_images=s['n_images'], dice_mean=round(s['dice_mean'], 4), dice_median=round(s['dice_median'], 4),
                dice_global=round(s['dice_global'], 4), hd95_mean=round(s['hd95_mean'], 1), hd95_median=round(s['hd95_median'], 1),
                slices_dice_lt_0_1=int((t.dice < 0.1).sum()))


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', type=Path, nargs='+', help='bts_train run folders trained on the same split')
    p.add_argument('--out', type=Path, help='CSV to write')
    a = p.parse_args()
    split = a.runs[0]/'split.csv'
    for r in a.runs[1:]:
        if not filecmp.cmp(split, r/'split.csv', shallow=False): raise SystemExit(f"{r}/split.csv differs from {split}: not one split")
    rows, all_pairs = [], load_split(split)
    for side in ('valid', 'test'):
        pairs = all_pairs[all_pairs.split == side]
        tables, maps = {}, []
        for r in a.runs:
            seg = RecordingSegmenter(r, device='cpu')
            tables[r.name] = evaluate_dataset(seg, split=split, side=side, verbose=False)
            maps.append(seg.kept)
            rows.append(figures(tables[r.name], r.name, side))
            recorded = json.loads((r/'eval.json').read_text())[side]['dice_mean']
            assert abs(tables[r.name].dice.mean() - recorded) < 1e-6, f"{r}: {side} Dice {tables[r.name].dice.mean()} is not the recorded {recorded}"
            print(rows[-1], flush=True)
        truths = [read_mask(m, pm.shape, i) for m, pm, i in zip(pairs['mask'], maps[0], pairs['image'])]
        mean = [np.mean(ps, axis=0) for ps in zip(*maps)]
        ens = pd.DataFrame([dict(image=i, **image_metrics(pm > 0.5, g)) for pm, g, i in zip(mean, truths, pairs['image'])])
        missed = np.array([t.dice.to_numpy() < 0.1 for t in tables.values()])
        rows.append(dict(figures(ens, 'ensemble of ' + ' + '.join(tables), side),
                         missed_by_all=int(missed.all(0).sum()), missed_by_any=int(missed.any(0).sum())))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    if a.out: a.out.parent.mkdir(parents=True, exist_ok=True); df.to_csv(a.out, index=False)
    print(df.to_string(index=False))
