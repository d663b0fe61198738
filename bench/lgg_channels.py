"""LGG input channels: FLAIR alone against the three sequences (pre-contrast, FLAIR, post-contrast) as three input channels,
compared on the same patient-wise folds. Each side is a `bts_train --folds 5` folder (or its record under bench/results).

    bts_train --data ../shared/data/lgg/kaggle_3m --out runs/lgg_cv5 --folds 5 --channel 1        # FLAIR, the earlier default
    bts_train --data ../shared/data/lgg/kaggle_3m --out runs/lgg_cv5_rgb --folds 5 --channel all  # the three sequences (now the default)
    python bench/lgg_channels.py --record runs/lgg_cv5_rgb bench/results/lgg_cv5_rgb              # keep the light files
    python bench/lgg_channels.py --flair bench/results/lgg_cv5_lite0 --all bench/results/lgg_cv5_rgb

Writes bench/results/lgg_channels.csv (one row per fold and side, and the pooled out-of-fold figures),
bench/results/lgg_channels_patients.csv (each patient's volumetric Dice under both) and bench/results/lgg_channels.json
(the paired comparison: patients better / worse, Wilcoxon signed-rank test over the 20 patients)."""
import argparse, json, os, shutil
from pathlib import Path
import pandas as pd
from scipy.stats import wilcoxon

RESULTS = Path(__file__).parent/'results'
RUN_FILES = ('config.yaml', 'cv.json', 'cv_summary.json', 'folds.csv', 'per_image_oof.csv')
FOLD_FILES = ('config.yaml', 'eval.json', 'leak_check.json', 'metrics.csv', 'model_card.json')
FIGURES = ('dice_patient_mean', 'dice_patient_median', 'dice_mean', 'dice_global', 'dice_mean_tumour_slices', 'hd95_mean',
           'missed_tumour_rate', 'fp_slice_rate')


def record(run:Path, dest:Path):
    "Copy a cross-validation's light files (no weights) into `dest`, with each patient's out-of-fold volumetric Dice (`per_patient_oof.csv`)."
    from bts_nb.metrics import patient_dice
    if not (run/'cv_summary.json').exists(): raise SystemExit(f"{run}: no cv_summary.json; is the cross-validation finished?")
    dest.mkdir(parents=True, exist_ok=True)
    for f in RUN_FILES: shutil.copy2(run/f, dest/f)
    oof = pd.read_csv(run/'per_image_oof.csv')
    pats = patient_dice(oof).merge(oof.groupby('patient').fold.first().reset_index(), on='patient')
    pats.sort_values('dice').to_csv(dest/'per_patient_oof.csv', index=False, float_format='%.4f')
    from figshare_cv import machine
    for fold in sorted(run.glob('fold_*')):
        (dest/fold.name).mkdir(exist_ok=True)
        for f in FOLD_FILES: shutil.copy2(fold/f, dest/fold.name/f)
        (dest/fold.name/'machine.json').write_text(json.dumps(machine(), indent=2) + '\n')   # the CPU beside the fold's minutes
    print(f"recorded {run} in {dest}")


def rows(cv:Path, side:str) -> list:
    s = json.loads((cv/'cv_summary.json').read_text())
    out = [dict(side=side, held_out=f'fold {i}', **{k: f.get(k) for k in FIGURES}) for i, f in enumerate(s['per_fold'])]
    out.append(dict(side=side, held_out='all, out of fold', **{k: s['out_of_fold'].get(k) for k in FIGURES}))
    out.append(dict(side=side, held_out='mean over folds', **{k: s['over_folds'][k]['mean'] for k in FIGURES if k in s['over_folds']}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--record', nargs=2, metavar=('RUN', 'DEST'), help='copy a finished cross-validation\'s light files and stop')
    ap.add_argument('--flair', default=RESULTS/'lgg_cv5_lite0', type=Path)
    ap.add_argument('--all', default=RESULTS/'lgg_cv5_rgb', type=Path)
    ap.add_argument('--out', default=RESULTS, type=Path)
    a = ap.parse_args()
    if a.record: return record(Path(a.record[0]), Path(a.record[1]))
    folds = [pd.read_csv(d/'folds.csv') for d in (a.flair, a.all)]
    if not folds[0].equals(folds[1]): raise SystemExit(f"{a.flair} and {a.all} do not hold the same folds: not a paired comparison")
    table = pd.DataFrame(rows(a.flair, 'FLAIR (channel 1)') + rows(a.all, 'three sequences (channel all)'))
    table.to_csv(a.out/'lgg_channels.csv', index=False, float_format='%.4f')
    pats = pd.read_csv(a.flair/'per_patient_oof.csv')[['patient', 'fold', 'gt_px', 'dice']].merge(
        pd.read_csv(a.all/'per_patient_oof.csv')[['patient', 'dice']], on='patient', suffixes=('_flair', '_all'))
    pats['change'] = pats.dice_all - pats.dice_flair
    pats.sort_values('gt_px').to_csv(a.out/'lgg_channels_patients.csv', index=False, float_format='%.4f')
    test = wilcoxon(pats.dice_all, pats.dice_flair)
    cfg = [(d/'config.yaml').read_text() for d in (a.flair, a.all)]
    summary = dict(patients=len(pats), better=int((pats.change > 0).sum()), worse=int((pats.change < 0).sum()),
                   same=int((pats.change == 0).sum()), mean_change=round(float(pats.change.mean()), 4), median_change=round(float(pats.change.median()), 4),
                   wilcoxon_statistic=float(test.statistic), wilcoxon_p=float(test.pvalue),
                   smallest_four_flair=pats.nsmallest(4, 'gt_px').dice_flair.round(4).tolist(),
                   smallest_four_all=pats.nsmallest(4, 'gt_px').dice_all.round(4).tolist(),
                   records=[os.path.relpath(a.flair), os.path.relpath(a.all)], same_recipe_but_channel=_same_but_channel(*cfg))
    (a.out/'lgg_channels.json').write_text(json.dumps(summary, indent=2) + '\n')
    print(table.round(4).to_string(index=False)); print(json.dumps(summary, indent=2))


def _same_but_channel(a:str, b:str) -> bool:
    import yaml
    x, y = yaml.safe_load(a), yaml.safe_load(b)
    x.pop('channel'); y.pop('channel')
    return x | {'data': None} == y | {'data': None}


if __name__ == '__main__': main()
