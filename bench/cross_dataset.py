"""Cross-dataset table: every model scored on every held-out set (bts_evaluate's figures), as CSV and Markdown.

    python bench/cross_dataset.py --models figshare=runs/figshare lgg=runs/lgg both=runs/both \
        --sets figshare=runs/figshare/split.csv lgg=runs/lgg/split.csv --evals runs/cross

Each set is the `test` side of a saved split: the Figshare blocks of a Figshare run, the LGG patients of an LGG run.
A run on both data sets splits each one exactly as a run on it alone does, so those test rows are unseen by every
model. LGG is read on its FLAIR channel (1), the channel its masks were drawn on; Figshare is single-channel.
Each evaluation is a `bts_evaluate` run into <evals>/<model>_on_<set>/ (per_image.csv, summary.json), reused if already there.
The table goes to bench/results/cross_dataset.csv. These are measurements, not tests.
"""
import argparse, json, subprocess, sys
from pathlib import Path
import pandas as pd

HERE = Path(__file__).parent
RESULTS = HERE/'results'/'cross_dataset.csv'
CHANNELS = {'lgg': 1}     # set name -> channel of its multi-channel files


def pairs(items):
    "['a=x', 'b=y'] -> {'a': 'x', 'b': 'y'}"
    out = {}
    for it in items:
        if '=' not in it: raise SystemExit(f"'{it}': give NAME=PATH")
        k, v = it.split('=', 1); out[k] = v
    return out


def evaluation(model, split, channel, folder):
    "summary.json of `bts_evaluate` for `model` on the test side of `split`, run unless already saved in `folder`."
    folder = Path(folder)
    if not (folder/'summary.json').exists():
        cmd = [str(Path(sys.executable).parent/'bts_evaluate'), '--model', str(model), '--split', str(split), '--side', 'test',
               '--out', str(folder)] + (['--channel', str(channel)] if channel is not None else [])
        if subprocess.run(cmd).returncode: raise SystemExit(f"bts_evaluate failed: {' '.join(cmd)}")
    return json.loads((folder/'summary.json').read_text())


def row(model_name, model, set_name, info):
    s = info['summary']
    card = json.loads((Path(model)/'model_card.json').read_text())
    a200 = next(r for r in info['area_sweep'] if r['min_area_px'] == 200)
    r4 = lambda v: None if v is None or pd.isna(v) else round(float(v), 4)
    return dict(trained_on=model_name, train_slices=card['split_counts'].get('train'), arch=card['arch'], size=card['size'],
                epochs=len(pd.read_csv(Path(model)/'metrics.csv')), train_min=card['train_minutes'],
                test_set=set_name, n_images=s['n_images'], n_without_tumour=s['n_empty_gt'], channel=info['channel'],
                dice_mean=r4(s['dice_mean']), dice_median=r4(s['dice_median']), dice_global=r4(s['dice_global']),
                dice_mean_tumour_slices=r4(s['dice_mean_tumour_slices']), hd95_mean=round(s['hd95_mean'], 1),
                hd95_median=round(s['hd95_median'], 1), missed_tumour_rate=r4(s['missed_tumour_rate']),
                fp_slice_rate=r4(s['fp_slice_rate']), fp_slice_rate_min_area_200=r4(a200['fp_slice_rate']),
                missed_tumour_rate_min_area_200=r4(a200['missed_tumour_rate']))


def markdown(df):
    "The results page's table of the models crossed with the data sets (bench/results_page.py renders it)."
    from results_page import table
    return table(df, ['trained_on', 'train_slices', 'test_set', 'n_images', 'dice_mean', 'dice_median', 'dice_mean_tumour_slices',
                      'hd95_mean', 'missed_tumour_rate', 'fp_slice_rate', 'fp_slice_rate_min_area_200'])


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', nargs='+', required=True, help='NAME=RUN_FOLDER ...')
    ap.add_argument('--sets', nargs='+', required=True, help='NAME=SPLIT_CSV ... (their test sides are scored)')
    ap.add_argument('--evals', default='bench/runs/cross', help='folder for the evaluations (reused when present)')
    a = ap.parse_args()
    models, sets = pairs(a.models), pairs(a.sets)
    rows = []
    for m, run in models.items():
        for s, split in sets.items():
            info = evaluation(run, split, CHANNELS.get(s), Path(a.evals)/f'{m}_on_{s}')
            rows.append(row(m, run, s, info)); print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    RESULTS.parent.mkdir(exist_ok=True); df.to_csv(RESULTS, index=False)
    print(markdown(df))
