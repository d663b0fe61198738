"""Post-processing measured on a cross-validation's held-out folds, where a choice can be made without touching a test set.

Each fold model of a `bts_train --folds` run scores its own held-out fold (patients it never saw, and that did not choose
its best epoch) once per variant, with the options `bts_evaluate` and `bts_predict` take (`--tta`, `--keep_largest`).
The slices of all folds are pooled, and every variant is compared with no post-processing slice by slice (paired: the
same model, the same slice), per fold and pooled. A variant that helps should help in most folds, not on average only.

    python bench/cv_postprocessing.py runs/fig_cv5 --out bench/results/fig_cv5_lite0/postprocessing.csv

Prints the table, and writes one row per variant and fold ('all' for the pooled slices). A measurement, not a test;
it takes 8 forward passes per slice in all (29 minutes for Figshare's 2575 slices on a 2-core AMD EPYC, float32).
"""
import argparse, json, time
from pathlib import Path
import pandas as pd

VARIANTS = {'none': {}, 'flip': dict(tta='flip'), 'full': dict(tta='full'), 'flip+largest': dict(tta='flip', keep_largest=True)}


def fold_tables(run:Path, variant:dict) -> pd.DataFrame:
    "Per-image metrics of every fold model on its own held-out fold, with `variant`'s Segmenter options; a `fold` column."
    from bts_nb.inference import Segmenter
    from bts_nb.evaluate import evaluate_dataset
    folds = json.loads((run/'cv.json').read_text())['folds']
    tables = []
    for k in range(folds):
        seg = Segmenter(run/f'fold_{k}', device='cpu', **variant)
        t = evaluate_dataset(seg, split=run/f'fold_{k}'/'split.csv', side='test', verbose=False)
        tables.append(t.assign(fold=k))
    return pd.concat(tables, ignore_index=True)


def row(t:pd.DataFrame, base:pd.DataFrame, name:str, fold) -> dict:
    "The reported figures of table `t`, and its per-slice Dice difference from `base` (same slices, same order)."
    from bts_nb.metrics import summarize_metrics
    s = summarize_metrics(t)
    d = t.dice.to_numpy() - base.dice.to_numpy()
    return dict(variant=name, fold=fold, n_images=s['n_images'], dice_mean=round(s['dice_mean'], 4), dice_median=round(s['dice_median'], 4),
                dice_global=round(s['dice_global'], 4), hd95_mean=round(s['hd95_mean'], 1), hd95_median=round(s['hd95_median'], 1),
                frac_dice_lt_0_1=round(float((t.dice < 0.1).mean()), 4), dice_mean_change=round(float(d.mean()), 4),
                slices_better=int((d > 1e-6).sum()), slices_worse=int((d < -1e-6).sum()))


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run', type=Path, help='a bts_train --folds run folder with all its fold models')
    p.add_argument('--out', type=Path, help='CSV to write (one row per variant and fold)')
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    a = p.parse_args()
    names = ['none'] + [v for v in a.variants if v != 'none']
    tables, rows = {}, []
    for name in names:
        t0 = time.time()
        tables[name] = fold_tables(a.run, VARIANTS[name])
        assert tables[name].image.tolist() == tables['none'].image.tolist()
        print(f"{name}: {len(tables[name])} slices scored in {time.time() - t0:.0f} s", flush=True)
    for name, t in tables.items():
        base = tables['none']
        for k in sorted(t.fold.unique()): rows.append(row(t[t.fold == k], base[base.fold == k], name, k))
        rows.append(row(t, base, name, 'all'))
    df = pd.DataFrame(rows)
    if a.out: a.out.parent.mkdir(parents=True, exist_ok=True); df.to_csv(a.out, index=False)
    print(df.to_string(index=False))
    pooled = df[df.fold == 'all'].set_index('variant')
    print('\nfolds in which each variant raised the mean Dice:',
          {n: int((df[(df.variant == n) & (df.fold != 'all')].dice_mean_change > 0).sum()) for n in names if n != 'none'})
    print(pooled[['dice_mean', 'dice_median', 'hd95_mean', 'frac_dice_lt_0_1', 'dice_mean_change']].to_string())
