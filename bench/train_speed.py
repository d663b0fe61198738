"""Training speed on this machine, per path and precision: the bare PyTorch step, bts_train's fastai loop, and the loaders alone.

    python bench/train_speed.py --data ~/data/figshare [--size 192] [--bs 8] [--n 160]

The network is the default (ImageNet-pretrained lite0 `smp_unet`). Rows, appended to bench/results/train_speed.csv with the
CPU's name, the threads and torch's version:
- `bare loop`: `bts_nb.train.train_speed`, the probe of `bts_train --budget_min` (random data, the median of 5 optimiser
  steps after 2 warm-up steps), in float32, float32 in channels-last order and, on a CPU with bf16 instructions, bfloat16
  autocast in channels-last order;
- `bts_train loop`: fastai's `fit` with bts_train's Learner and precision callbacks on `--n` Figshare training slices of the
  README's block split, through each data pipeline (`cpu`: albumentations per slice; `device`: the cache of chapter
  `device_data`, here in host memory); the training phase of the second epoch is timed;
- `loaders alone`: an epoch of training batches from each pipeline, no model.
Timings, not tests: they move by about 10 % between runs and with whatever else the cores are doing.
"""
import argparse, dataclasses, sys, time
from pathlib import Path
import pandas as pd, torch
from fastai.callback.core import Callback
from bts_nb.train import TrainConfig, train_speed
from bts_nb.callbacks import resolve_precision, precision_callbacks, cpu_bf16_supported
from bts_nb.data import seg_dataloaders, split_source
from bts_nb.learner import seg_learner

sys.path.insert(0, str(Path(__file__).parent))
from encoders import cpu_name   # noqa: E402  (the CPU's model name, beside every timing)

OUT = Path(__file__).parent/'results'/'train_speed.csv'


class TrainPhaseTimer(Callback):
    "Seconds of each epoch's training phase (validation left out)."
    def before_fit(self): self.seconds = []
    def before_train(self): self.t = time.perf_counter()
    def after_train(self): self.seconds.append(time.perf_counter() - self.t)


def items_per_s(dl) -> float:
    "Items per second over an epoch of `dl`, after its first batch."
    it = iter(dl); next(it); t0 = time.perf_counter(); n = sum(len(xb) for xb, _ in it)
    return n / (time.perf_counter() - t0)


def fastai_loop(split:pd.DataFrame, size:int, bs:int, pipeline:str) -> tuple:
    "(training images/s of the second epoch of bts_train's Learner, loader items/s) through `pipeline`."
    dls = seg_dataloaders(split=split, size=size, bs=bs, pipeline=pipeline, verbose=False)
    loader = items_per_s(dls.train)
    learn = seg_learner(dls, 'smp_unet', 'bce_dice', pretrained=True, encoder='tf_efficientnet_lite0', cbs=precision_callbacks('auto'))
    timer = TrainPhaseTimer()
    learn.fit(2, 1e-3, cbs=[timer])
    return len(dls.train) * bs / timer.seconds[-1], loader


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--data', required=True, help='the Figshare folder')
    ap.add_argument('--size', type=int, default=192)
    ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--n', type=int, default=160, help='training slices of the fastai loop')
    a = ap.parse_args()
    base = dict(cpu=cpu_name(), threads=torch.get_num_threads(), torch=torch.__version__, size=a.size, bs=a.bs)
    rows = []
    cfg = TrainConfig(size=a.size, bs=a.bs)
    for prec, cl in [('fp32', False), ('fp32', True)] + ([('bf16', True)] if cpu_bf16_supported() else []):
        rows.append(dict(path='bare loop', pipeline='', precision=prec, memory_format='channels_last' if cl else 'contiguous',
                         img_s=round(train_speed(dataclasses.replace(cfg, precision=prec), channels_last=cl), 2), **base))
        print(rows[-1], flush=True)
    full = split_source(a.data, valid_pct=0.15, test_pct=0.15, verbose=False)
    split = pd.concat([full[full.split == 'train'].head(a.n), full[full.split == 'valid'].head(32)])
    for pipeline in ('cpu', 'device'):
        loop, loader = fastai_loop(split, a.size, a.bs, pipeline)
        for path, v in (('bts_train loop', loop), ('loaders alone', loader)):
            rows.append(dict(path=path, pipeline=pipeline, precision=resolve_precision('auto') if path != 'loaders alone' else '',
                             memory_format='channels_last' if path != 'loaders alone' else '', img_s=round(v, 2), **base))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    if OUT.exists(): df = pd.concat([pd.read_csv(OUT), df], ignore_index=True)
    df.to_csv(OUT, index=False)
    print(pd.DataFrame(rows)[['path', 'pipeline', 'precision', 'memory_format', 'img_s']].to_string(index=False))
    print(f"appended to {OUT}")


if __name__ == '__main__':
    main()
