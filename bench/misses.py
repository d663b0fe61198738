"""What the missed slices of a run are: a tumour marked in the wrong place, or nothing marked; by tumour size and by patient block.

    python bench/misses.py runs/a [runs/b ...] [--side test] [--threshold 0.1]

For each run folder it reads per_image_<side>.csv (written by bts_train) and split.csv, and counts the slices whose
Dice is under --threshold ("misses"), split into those where the model marked something elsewhere (no overlap with the
tumour: pred_px > 0, tp_px == 0), marked too little, or marked nothing; then the miss rate by tumour-size tercile and the
blocks (patients) that hold most misses. It prints one Markdown table and appends its rows to bench/results/misses.csv.
"""
import argparse
from pathlib import Path
import pandas as pd

OUT = Path(__file__).parent/'results'/'misses.csv'


def misses(run, side='test', threshold=0.1) -> dict:
    run = Path(run)
    t = pd.read_csv(run/f'per_image_{side}.csv')
    split = pd.read_csv(run/'split.csv') if (run/'split.csv').exists() else pd.DataFrame(columns=['image'])   # records keep split_groups.csv only
    split['name'] = split.image.map(lambda p: Path(p).name)        # split.csv holds absolute paths, the tables relative ones
    t = t.merge(split[['name', 'block']] if 'block' in split else split[['name']], on='name', how='left')
    tum = t[t.gt_px > 0]
    miss = tum[tum.dice < threshold]
    wrong_place = miss[(miss.pred_px > 0) & (miss.tp_px == 0)]
    nothing = miss[miss.pred_px == 0]
    terciles = pd.qcut(tum.gt_px, 3, labels=['small', 'medium', 'large'])
    rate = (tum.dice < threshold).groupby(terciles, observed=True).mean()
    row = dict(run=run.name, side=side, slices=len(t), with_tumour=len(tum), misses=len(miss),
               miss_rate=round(len(miss) / max(len(tum), 1), 3), wrong_place=len(wrong_place), too_little=len(miss) - len(wrong_place) - len(nothing),
               nothing=len(nothing), **{f'miss_rate_{k}': round(float(v), 3) for k, v in rate.items()},
               empty_slices=int((t.gt_px == 0).sum()), empty_with_prediction=int(((t.gt_px == 0) & (t.pred_px > 0)).sum()))
    if 'block' in miss and miss.block.notna().any():
        top = miss.block.value_counts()
        row['blocks_with_half_the_misses'] = int((top.cumsum() < len(miss) / 2).sum() + 1)
        row['blocks_with_misses'] = int(len(top)); row['blocks'] = int(t.block.nunique())
    return row


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('runs', nargs='+')
    ap.add_argument('--side', default='test')
    ap.add_argument('--threshold', type=float, default=0.1)
    a = ap.parse_args()
    df = pd.DataFrame([misses(r, a.side, a.threshold) for r in a.runs])
    old = pd.read_csv(OUT) if OUT.exists() else None
    if old is not None: old = old[~old.set_index(['run', 'side']).index.isin(df.set_index(['run', 'side']).index)]
    pd.concat([old, df], ignore_index=True).to_csv(OUT, index=False)
    print('| ' + ' | '.join(df.columns) + ' |\n|' + '---|' * len(df.columns))
    for r in df.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
