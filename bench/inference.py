"""Inference speed and peak memory of a trained model on this machine, as bts_predict runs it.

    python bench/inference.py --model runs/figshare [--sizes 256 512] [--n 64] [--bs 8] [--tta none]

For each input size, a fresh process segments `n` slices (real ones from --data if given, resized to the size,
else synthetic phantoms) with `Segmenter.probs` in batches of `bs`: preprocessing, forward pass and resizing the
probabilities back to the input size. Prints slices/s and the process's peak resident memory (ru_maxrss), and
writes bench/results/inference.csv. Timings, not tests: repeated runs vary by about 10 %.
"""
import argparse, json, resource, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd


def one_size(model, size, n, bs, tta, data):
    from PIL import Image
    from bts_nb.inference import Segmenter
    from bts_nb.readers import read_slice_u8, read_pairs
    from bts_nb.phantoms import phantom_patient
    seg = Segmenter(model, device='cpu', tta=tta)
    if data: srcs = [read_slice_u8(p) for p in read_pairs(data, verbose=False).image[:n]]
    else: srcs = [im for s in range(n // 8 + 1) for im in phantom_patient(s, 8, 256)[0]][:n]
    imgs = [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in srcs]
    seg.probs(imgs[:bs])                       # warm-up
    t = time.perf_counter()
    for i in range(0, n, bs): seg.probs(imgs[i:i+bs])
    dt = time.perf_counter() - t
    return dict(model=str(model), arch=seg.card['arch'], train_size=seg.size, input_px=size, tta=tta, bs=bs, n=n,
                slices_per_s=round(n / dt, 1), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True); ap.add_argument('--data')
    ap.add_argument('--sizes', type=int, nargs='+', default=[256, 512])
    ap.add_argument('--n', type=int, default=64); ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--tta', default='none'); ap.add_argument('--one', type=int)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_size(a.model, a.one, a.n, a.bs, a.tta, a.data))); sys.exit()
    rows = []
    for size in a.sizes:
        cmd = [sys.executable, __file__, '--model', a.model, '--one', str(size), '--n', str(a.n), '--bs', str(a.bs), '--tta', a.tta]
        if a.data: cmd += ['--data', a.data]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out)); print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    dest = Path(__file__).parent/'results'/'inference.csv'; dest.parent.mkdir(exist_ok=True)
    df.to_csv(dest, index=False)
    print('| ' + ' | '.join(df.columns) + ' |\n|' + '---|' * len(df.columns))
    for r in df.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
