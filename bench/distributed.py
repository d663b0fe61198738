"""Training throughput of one process against several (`bts_train --nproc`), on this machine.

    python bench/distributed.py [--nproc 1 2] [--epochs 3] [--arch smp_unet] [--encoder tf_efficientnet_lite0] [--size 192]

Trains the same recipe on the same phantoms (the synthetic set, fp32) once per process count, with --bs 8 per process, and
reads the seconds of each epoch from the run's metrics.csv (training and validation; the first epoch, which warms up, is left
out). Prints training slices per second and writes bench/results/distributed.csv and distributed.json. On a CPU the
processes share the cores (torchrun gives each one thread), so this measures the overhead of the distributed path more than
a speed-up; on a multi-GPU node each process has its own GPU. Timings, not tests.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import pandas as pd

from encoders import cpu_name   # bench/encoders.py: the CPU's model name, beside every timing

BIN = Path(sys.executable).parent


def seconds(t: str) -> float:
    parts = [float(x) for x in str(t).split(':')]
    return sum(v * 60 ** i for i, v in enumerate(reversed(parts)))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--nproc', type=int, nargs='+', default=[1, 2]); ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--arch', default='smp_unet'); ap.add_argument('--encoder', default='tf_efficientnet_lite0'); ap.add_argument('--size', type=int, default=192)
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'))
    a = ap.parse_args()
    from bts_nb.phantoms import synthetic_root
    data, scratch, rows = synthetic_root(), Path(tempfile.mkdtemp(prefix='bts_ddp_')), []
    for n in a.nproc:
        run = scratch/f'p{n}'
        cmd = [str(BIN/'bts_train'), '--data', str(data), '--out', str(run), '--arch', a.arch, '--encoder', a.encoder, '--size', str(a.size),
               '--epochs', str(a.epochs), '--bs', '8', '--precision', 'fp32', '--nproc', str(n)]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - t
        log, split = pd.read_csv(run/'metrics.csv'), pd.read_csv(run/'split.csv')
        n_train = int((split.split == 'train').sum())
        epoch_s = [seconds(x) for x in log.time[1:]]
        card = json.loads((run/'model_card.json').read_text())
        rows.append(dict(processes=n, bs_per_process=8, global_batch=card['global_batch'], train_slices=n_train,
                         epoch_seconds=round(sum(epoch_s) / len(epoch_s), 1), train_slices_per_s=round(n_train * len(epoch_s) / sum(epoch_s), 2),
                         wall_seconds=round(wall, 1), valid_dice_last_epoch=round(float(log.dice.iloc[-1]), 4)))
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out/'distributed.csv', index=False)
    info = dict(command=' '.join(['python', 'bench/distributed.py', *sys.argv[1:]]), cpu=cpu_name(), cpu_count=os.cpu_count(),
                recipe=f'{a.arch} on {a.encoder}, {a.size} px, fp32, {a.epochs} epochs on the phantoms; the first epoch left out',
                backend='gloo' if not __import__('torch').cuda.is_available() else 'nccl')
    (out/'distributed.json').write_text(json.dumps(info, indent=2))
    print(f"CPU: {info['cpu']}")
    print('| ' + ' | '.join(df.columns) + ' |\n|' + '---|' * len(df.columns))
    for r in df.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
