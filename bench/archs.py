"""Speed of every architecture on this machine: train and inference images/s and parameter count.

    python bench/archs.py [--sizes 128 256] [--bs 8] [--archs dynamic_unet smp_unet ...]

Prints a Markdown table and writes bench/results/archs.csv. Train img/s is one AdamW step (forward, BCE+Dice
loss, backward, update) on random data; inference is a no-grad forward in eval mode. Each figure is the best
of `--reps` timed repetitions after one warm-up. Timings, not tests: they vary by about 10-15 % between runs.
"""
import argparse, time, platform
from pathlib import Path
import pandas as pd, torch
from bts_nb.models import ARCHS, build_model
from bts_nb.losses import get_loss


def time_arch(arch, size, bs, reps):
    model = build_model(arch, size=size)
    loss_fn, opt = get_loss('bce_dice'), torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(bs, 1, size, size), (torch.rand(bs, size, size) > 0.9).long()
    def step():
        model.train()
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        loss = loss_fn(out, y); loss.backward(); opt.step(); opt.zero_grad()
    def infer():
        model.eval()
        with torch.no_grad(): model(x)
    res = {}
    for name, f in (('train', step), ('infer', infer)):
        f(); ts = []
        for _ in range(reps):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        res[name] = bs / min(ts)
    return dict(arch=arch, size=size, bs=bs, params_M=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                train_img_s=round(res['train'], 2), infer_img_s=round(res['infer'], 2))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', type=int, nargs='+', default=[128, 256])
    ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--reps', type=int, default=2)
    ap.add_argument('--archs', nargs='+', default=list(ARCHS))
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for size in a.sizes:
        for arch in a.archs:
            rows.append(time_arch(arch, size, a.bs, a.reps))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    out = Path(__file__).parent/'results'/'archs.csv'; out.parent.mkdir(exist_ok=True)
    df.to_csv(out, index=False)
    print(f"\n{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, torch {torch.__version__}\n")
    print('| ' + ' | '.join(df.columns) + ' |\n|' + '---|' * len(df.columns))
    for r in df.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
