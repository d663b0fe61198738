"""Figshare 5-fold cross-validation of the default recipe, recorded fold by fold.

The default recipe is the lite0 U-Net, ImageNet-pretrained, 192 px and 10 epochs. Its folds are contiguous blocks of
the numbering, so no patient is in two folds. Five runs of it take about four hours of 2 CPU cores, which is more than
one session. Each session trains the folds it has time for (`--fold`), and this script adds each finished fold's light
files (no weights) to the record. Once all five are in, it writes the summary with bts_nb's own `cv_summary`, which
first checks that every recorded fold holds its own fold's slices and the same config.

    bts_train --data ../shared/data/figshare --out runs/fig_cv5 --folds 5 [--fold 2,3]
    python bench/figshare_cv.py --record runs/fig_cv5       # adds the finished folds to bench/results/fig_cv5_lite0
    python bench/figshare_cv.py                             # what is recorded; the summary once all folds are in
"""
import argparse, filecmp, json, shutil
from pathlib import Path
import pandas as pd

RESULTS = Path(__file__).parent/'results'
DEST = RESULTS/'fig_cv5_lite0'
CV_FILES = ('cv.json', 'config.yaml', 'folds.csv')
FOLD_FILES = ('config.yaml', 'eval.json', 'leak_check.json', 'metrics.csv', 'model_card.json', 'per_image_test.csv')


def finished_folds(run:Path) -> list:
    "The folds of `run` whose training finished, by bts_train's own rule."
    from bts_nb.train import _fold_finished
    return [i for i in range(json.loads((run/'cv.json').read_text())['folds']) if _fold_finished(run/f'fold_{i}')]


def record(run:Path, dest:Path) -> list:
    "Add `run`'s finished folds to `dest`, after checking that both are the same cross-validation (same cv.json, config and folds)."
    if not (run/'cv.json').exists(): raise SystemExit(f"{run}: no cv.json; not a cross-validation folder")
    if (dest/'cv.json').exists():
        differ = [f for f in CV_FILES if not filecmp.cmp(run/f, dest/f, shallow=False)]
        if differ: raise SystemExit(f"{run} is another cross-validation than the one recorded in {dest}: {', '.join(differ)} differ")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        for f in CV_FILES: shutil.copy2(run/f, dest/f)
    added = []
    for i in finished_folds(run):
        if (dest/f'fold_{i}'/'eval.json').exists(): continue
        (dest/f'fold_{i}').mkdir(exist_ok=True)
        for f in FOLD_FILES: shutil.copy2(run/f'fold_{i}'/f, dest/f'fold_{i}'/f)
        added.append(i)
    print(f"recorded fold(s) {added or 'none new'} of {run} in {dest}")
    return added


def report(dest:Path):
    "Each recorded fold's held-out figures; once all folds are in, the summary (written by bts_nb's `cv_summary`)."
    n = json.loads((dest/'cv.json').read_text())['folds']
    have = [i for i in range(n) if (dest/f'fold_{i}'/'eval.json').exists()]
    for i in have:
        t = json.loads((dest/f'fold_{i}'/'eval.json').read_text())['test']
        under = (pd.read_csv(dest/f'fold_{i}'/'per_image_test.csv')['dice'] < 0.1).mean()
        print(f"fold {i}: {t['n_images']} held-out slices, mean per-image Dice {t['dice_mean']:.3f} (median {t['dice_median']:.3f}), "
              f"global {t['dice_global']:.3f}, HD95 {t['hd95_mean']:.1f} px, slices under Dice 0.1 {under:.1%}, missed tumours {t['missed_tumour_rate']:.1%}")
    if len(have) < n:
        print(f"{len(have)} of {n} folds recorded; train the others with: bts_train --data ../shared/data/figshare --out runs/fig_cv5 "
              f"--folds {n} --fold {','.join(str(i) for i in range(n) if i not in have)}")
        return
    from bts_nb.train import cv_summary
    s = cv_summary(dest)
    m, o = s['over_folds'], s['out_of_fold']
    print(f"{n}-fold CV, {s['n_images']} slices in {s['n_groups']} blocks; over folds (mean ± sd): "
          + ', '.join(f"{k} {m[k]['mean']:.3f} ± {m[k]['sd']:.3f}" for k in ('dice_mean', 'dice_median', 'dice_global', 'hd95_mean', 'missed_tumour_rate')))
    print("out of fold, pooled: " + ', '.join(f"{k} {o[k]:.3f}" for k in ('dice_mean', 'dice_median', 'dice_global', 'hd95_mean', 'missed_tumour_rate')))
    print(f"out of fold, slices under Dice 0.1: {(pd.read_csv(dest/'per_image_oof.csv')['dice'] < 0.1).mean():.1%}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--record', type=Path, metavar='RUN', help="add the finished folds of this bts_train --folds folder to --dest")
    ap.add_argument('--dest', type=Path, default=DEST)
    a = ap.parse_args()
    if a.record: record(a.record, a.dest)
    report(a.dest)


if __name__ == '__main__': main()
