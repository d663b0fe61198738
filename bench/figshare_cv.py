"""Figshare 5-fold cross-validation of a recipe, recorded fold by fold.

The recipes recorded are the lite0 U-Net, ImageNet-pretrained, 192 px and 10 epochs, under two fine-tuning schedules:
fastai's (`bench/results/fig_cv5_lite0`, the default's record unless --dest names another) and full fine-tuning from the
first step (`bench/results/fig_cv5_ft`), and candidates that change one lever of it on two folds (`fig_cv5_lr2e-3`,
`fig_cv5_lrmult3`, `fig_cv5_freeze1`: recorded with `--dest`, compared by bench/schedule_screen.py). The folds are
contiguous blocks of the numbering, so no patient is in two folds.
Five runs take two to four hours of 2 CPU cores, which may be more than one session. Each session trains the folds it has
time for (`--fold`), and this script adds each finished fold's light files (no weights) to the record. Once all five are
in, it writes the summary with bts_nb's own `cv_summary`, which first checks that every recorded fold holds its own
fold's slices and the same config.

    bts_train --data ~/data/figshare --out runs/fig_cv5 --folds 5 [--fold 2,3]
    python bench/figshare_cv.py --record runs/fig_cv5       # adds the finished folds to bench/results/fig_cv5_lite0
    python bench/figshare_cv.py                             # what is recorded; once all folds are in, the summary and cv_table.csv
    python bench/figshare_cv.py --markdown                  # the README's table, from the record
"""
import argparse, filecmp, json, os, shutil
from pathlib import Path
import pandas as pd

RESULTS = Path(__file__).parent/'results'
DEST = RESULTS/'fig_cv5_lite0'
CV_FILES = ('cv.json', 'config.yaml', 'folds.csv')
FOLD_FILES = ('config.yaml', 'eval.json', 'leak_check.json', 'metrics.csv', 'model_card.json', 'per_image_test.csv')


def finished_folds(run:Path) -> list:
    "The folds of `run` whose training finished, by bts_train's own rule."
    from bts_nb.cv import fold_finished
    return [i for i in range(json.loads((run/'cv.json').read_text())['folds']) if fold_finished(run/f'fold_{i}')]


def machine() -> dict:
    "The CPU that trained a fold, for the record beside its minutes: record a fold on the machine that trained it."
    from encoders import cpu_name   # bench/encoders.py: the CPU's model name, beside every timing
    flags = next((l.split(':', 1)[1].split() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('flags')), [])
    return dict(cpu=cpu_name(), cores=os.cpu_count(), bf16=any(f in flags for f in ('avx512_bf16', 'amx_bf16')))


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
        (dest/f'fold_{i}'/'machine.json').write_text(json.dumps(machine(), indent=2) + '\n')
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
        print(f"{len(have)} of {n} folds recorded; train the others with the cross-validation's own command and "
              f"--fold {','.join(str(i) for i in range(n) if i not in have)}, then record them")
        return
    from bts_nb.cv import cv_summary
    s = cv_summary(dest)
    m, o = s['over_folds'], s['out_of_fold']
    print(f"{n}-fold CV, {s['n_images']} slices in {s['n_groups']} blocks; over folds (mean ± sd): "
          + ', '.join(f"{k} {m[k]['mean']:.3f} ± {m[k]['sd']:.3f}" for k in ('dice_mean', 'dice_median', 'dice_global', 'hd95_mean', 'missed_tumour_rate')))
    print("out of fold, pooled: " + ', '.join(f"{k} {o[k]:.3f}" for k in ('dice_mean', 'dice_median', 'dice_global', 'hd95_mean', 'missed_tumour_rate')))
    table = cv_table(dest)
    print(f"out of fold, slices under Dice 0.1: {table.set_index('held_out').loc['all slices, out of fold', 'frac_dice_lt_0_1']:.1%}")
    table.to_csv(dest/'cv_table.csv', index=False)
    print(f"wrote {dest/'cv_table.csv'}; python bench/figshare_cv.py --markdown prints it as the README's table")


def cv_table(dest:Path) -> pd.DataFrame:
    "One row per fold, the mean and sd over folds, and all slices pooled out of fold, from `cv_summary.json` and `per_image_oof.csv`."
    s = json.loads((dest/'cv_summary.json').read_text())
    folds, oof = pd.read_csv(dest/'folds.csv'), pd.read_csv(dest/'per_image_oof.csv')
    keys = ('dice_mean', 'dice_median', 'dice_global', 'hd95_mean', 'hd95_median', 'missed_tumour_rate')
    rows = []
    for i, (t, v) in enumerate(zip(s['per_fold'], s['valid_per_fold'])):
        card = json.loads((dest/f'fold_{i}'/'model_card.json').read_text())
        rows.append(dict(held_out=f'fold {i}', groups=folds.loc[folds.fold == i, 'group'].nunique(), n_images=t['n_images'],
                         train_minutes=card['train_minutes'], valid_dice_mean=v['dice_mean'], **{k: t[k] for k in keys},
                         frac_dice_lt_0_1=(oof.loc[oof.fold == i, 'dice'] < 0.1).mean()))
    m, o = s['over_folds'], s['out_of_fold']
    rows.append(dict(held_out='mean over folds', **{k: m[k]['mean'] for k in keys}))
    rows.append(dict(held_out='sd over folds', **{k: m[k]['sd'] for k in keys}))
    rows.append(dict(held_out='all slices, out of fold', groups=s['n_groups'], n_images=o['n_images'], **{k: o[k] for k in keys},
                     frac_dice_lt_0_1=(oof['dice'] < 0.1).mean()))
    return pd.DataFrame(rows).astype({'groups': 'Int64', 'n_images': 'Int64'})


def markdown(dest:Path):
    "Print the README's table from the record's `cv_table.csv`."
    t = pd.read_csv(dest/'cv_table.csv').set_index('held_out')
    pct = lambda x: f"{100*x:.1f} %"
    cells = lambda r: [f"{r.dice_mean:.3f}", f"{r.dice_median:.3f}", f"{r.dice_global:.3f}", f"{r.hd95_mean:.1f} ({r.hd95_median:.1f})",
                       pct(r.frac_dice_lt_0_1), pct(r.missed_tumour_rate)]
    row = lambda cs: print('| ' + ' | '.join(map(str, cs)) + ' |')
    row(['held out', 'blocks', 'slices', 'training, min', 'validation mean Dice', 'held-out mean per-image Dice', 'median', 'global',
         'HD95 mean (median), px', 'slices under Dice 0.1', 'missed tumour slices'])
    row(['---']*11)
    for name, r in t[t.index.str.startswith('fold')].iterrows():
        row([name, int(r.groups), int(r.n_images), f"{r.train_minutes:.1f}", f"{r.valid_dice_mean:.3f}", *cells(r)])
    m, sd = t.loc['mean over folds'], t.loc['sd over folds']
    ms = lambda k, d=3: f"{m[k]:.{d}f} ± {sd[k]:.{d}f}"
    row([f"mean ± sd over the {t.index.str.startswith('fold').sum()} folds", '', '', '', '', ms('dice_mean'), ms('dice_median'), ms('dice_global'),
         ms('hd95_mean', 1), '', f"{pct(m.missed_tumour_rate)} ± {pct(sd.missed_tumour_rate)}"])
    o = t.loc['all slices, out of fold']
    c = cells(o)
    row(['all slices, out of fold', int(o.groups), int(o.n_images), '', '', f"**{c[0]}**", *c[1:]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--record', type=Path, metavar='RUN', help="add the finished folds of this bts_train --folds folder to --dest")
    ap.add_argument('--dest', type=Path, default=DEST)
    ap.add_argument('--markdown', action='store_true', help="print the README's table (needs every fold recorded)")
    a = ap.parse_args()
    if a.record: record(a.record, a.dest)
    if a.markdown: return markdown(a.dest)
    report(a.dest)


if __name__ == '__main__': main()
