"""A long schedule on one GPU within about 10 device-minutes, written to its records.

On a GPU, bts_train's device pipeline (chapter `device_data`) decodes the slices once into a cache on the GPU and augments
and validates them there, so a few minutes buy hundreds of epochs where the CPU pipeline bought tens. This script trains
the default recipe (pretrained lite0 `smp_unet`, full fine-tuning) long, at 256 px, with `--budget_min` fitting the epochs
to the minutes from a speed probe:

    python bench/gpu_long.py --data ~/data/figshare --out runs/gpu_long              # the README's block split (15 % / 15 %), 6 minutes
    python bench/gpu_long.py --data ~/data/figshare --out runs/gpu_long --folds      # the five folds of bench/results/fig_cv5_ft, 1.2 minutes each
    python bench/gpu_long.py --dry-run --out /tmp/gpu_long                            # the same commands on the phantoms, 1 epoch, on any machine (CI)

Each finished run's light files (no weights) go to `--results` (default bench/results/gpu_long/<name>/), with the GPU and
CPU named in machine.json, and one row per run to gpu_long.csv there.

Batch and learning rate: a GPU takes batch 32 where the CPU default is 8. AdamW's peak rate is scaled by the square root
of the batch ratio (1e-3 -> 2e-3), the rule for adaptive optimisers (Malladi et al., 2022, "On the SDEs and scaling rules
for adaptive gradient algorithms"); linear scaling suits SGD. The one cycle's warm-up (bts_train's --warmup, a quarter of the steps) covers the start.
"""
import argparse, json, os, shutil, sys
from pathlib import Path
import pandas as pd

RESULTS = Path(__file__).parent/'results'/'gpu_long'
RUN_FILES = ('config.yaml', 'eval.json', 'metrics.csv', 'model_card.json', 'per_image_test.csv', 'per_image_valid.csv')
CV_FILES = ('cv.json', 'config.yaml', 'folds.csv', 'cv_summary.json', 'per_image_oof.csv')   # the last two once every fold finished
BS, LR = 32, 2e-3                       # batch 8 -> 32: lr 1e-3 * sqrt(32 / 8)


def runs(data, out:Path, folds:bool, dry_run:bool) -> list:
    "(name, bts_train arguments) of the runs to make."
    common = ['--size', '256', '--bs', str(BS), '--lr', str(LR), '--pipeline', 'device']
    if dry_run: common = ['--size', '64', '--bs', '8', '--pipeline', 'device', '--epochs', '1', '--pretrained', 'false']
    data = [] if data is None else ['--data', str(data)]
    if folds:
        budget = [] if dry_run else ['--budget_min', '1.2']
        return [('fig_cv5_long', data + common + budget + ['--folds', '2' if dry_run else '5', '--out', str(out/'fig_cv5_long')])]
    budget = [] if dry_run else ['--budget_min', '6']
    return [('block_long', data + common + budget + ['--valid_pct', '0.15', '--test_pct', '0.15', '--out', str(out/'block_long')])]


def machine() -> dict:
    "The GPU (or none) and the CPU that ran, for the record."
    import torch
    sys.path.insert(0, str(Path(__file__).parent))
    from encoders import cpu_name
    return dict(gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, cpu=cpu_name(), cores=os.cpu_count())


def row(name:str, run:Path, mach:dict) -> dict:
    "One run's figures: what trained, how long, and its held-out Dice."
    card, ev = json.loads((run/'model_card.json').read_text()), json.loads((run/'eval.json').read_text())
    side = 'test' if 'test' in ev else 'valid'
    t = pd.read_csv(run/f'per_image_{side}.csv')
    return dict(name=name, gpu=mach['gpu'], cpu=mach['cpu'], pipeline=card['pipeline_used'], precision=card['precision_used'],
                size=card['size'], encoder=card['arch_kw'].get('encoder'), bs=card['global_batch'], epochs=card['epochs_trained'],
                train_minutes=card['train_minutes'], s_per_epoch=round(60 * card['train_minutes'] / card['epochs_trained'], 2),
                valid_dice_mean=round(ev['valid']['dice_mean'], 4), scored_on=side, dice_mean=round(ev[side]['dice_mean'], 4),
                dice_median=round(ev[side]['dice_median'], 4), dice_global=round(ev[side]['dice_global'], 4),
                hd95_mean=round(ev[side]['hd95_mean'], 2), frac_dice_lt_0_1=round(float((t.dice < 0.1).mean()), 4))


def record(name:str, run:Path, results:Path, mach:dict) -> list:
    "Copy a finished run's (or cross-validation's) light files into `results/name`; its rows for gpu_long.csv."
    dest, rows = results/name, []
    folds = sorted(run.glob('fold_*')) if (run/'cv.json').exists() else [run]
    for f in CV_FILES if folds != [run] else ():
        dest.mkdir(parents=True, exist_ok=True)
        if (run/f).exists(): shutil.copy2(run/f, dest/f)
    for r in folds:
        if not (r/'eval.json').exists(): continue                      # a fold that did not finish
        d = dest/r.name if r != run else dest
        d.mkdir(parents=True, exist_ok=True)
        for f in RUN_FILES:
            if (r/f).exists(): shutil.copy2(r/f, d/f)
        (d/'machine.json').write_text(json.dumps(mach, indent=2) + '\n')
        rows.append(row(name if r == run else f'{name}/{r.name}', r, mach))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', help='the Figshare folder (left out with --dry-run: the phantoms)')
    ap.add_argument('--out', required=True, help='folder for the runs')
    ap.add_argument('--folds', action='store_true', help="the five Figshare folds instead of the block split")
    ap.add_argument('--dry-run', action='store_true', help='the same commands on the phantoms, one epoch: checks the script anywhere')
    ap.add_argument('--results', default=None, help=f'where the records go (default {RESULTS}; with --dry-run, OUT/records)')
    a = ap.parse_args(argv)
    if a.data is None and not a.dry_run: ap.error('--data is required, except with --dry-run')
    from bts_nb.cv import bts_train
    out = Path(a.out).expanduser()
    results = Path(a.results) if a.results else (out/'records' if a.dry_run else RESULTS)
    mach, rows = machine(), []
    for name, args in runs(a.data, out, a.folds, a.dry_run):
        print(f"== {name}: bts_train {' '.join(args)}", flush=True)
        try: bts_train(args)
        except SystemExit as e:
            if e.code: print(f"{name}: bts_train stopped with status {e.code}; what finished is recorded", flush=True)
        rows += record(name, out/name, results, mach)
    if not rows: sys.exit("no run finished: nothing recorded")
    table = results/'gpu_long.csv'
    old = pd.read_csv(table) if table.exists() else pd.DataFrame()
    new = pd.concat([old[~old.name.isin([r['name'] for r in rows])] if len(old) else old, pd.DataFrame(rows)], ignore_index=True)
    results.mkdir(parents=True, exist_ok=True); new.to_csv(table, index=False)
    print(pd.DataFrame(rows).to_string(index=False)); print(f"recorded in {results}")


if __name__ == '__main__':
    main()
