"""bts_predict over an archive: pace and peak memory for 1 000 and 10 000 slices, the loader workers compared, and a run
killed half-way then resumed, with each slice predicted exactly once.

    python bench/archive.py [--model runs/figshare] [--n 10000] [--out bench/results/archive]

Writes `n` synthetic 256 px slices (phantoms, PNG) into a scratch folder, then runs the `bts_predict` command as a user
would (`--save mask`: an archive keeps the masks and the table). The pace of a real model is measured on 1 000 slices, with
0 and 1 loader workers: --model, or a one-epoch model of the default recipe on phantoms (its masks mean nothing, its pace is
the default model's). The 1 000- and 10 000-slice runs that compare memory, and the run killed half-way and resumed, use a
small model (a ResNet-18 U-Net at 64 px), so that the streaming, not the network, is measured, in minutes. It also times one
forward pass channels-first against channels-last. Memory is the peak resident set of
the whole process tree (bts_predict and its loader workers), sampled every 0.1 s with psutil; workers share pages with
their parent after fork, so the sum overstates the memory in use. Prints a table and writes archive.csv and archive.json.
Timings, not tests: runs vary by about 10 % here.
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd, psutil

from encoders import cpu_name   # bench/encoders.py: the CPU's model name, beside every timing

BIN = Path(sys.executable).parent


def write_slices(root, n):
    from PIL import Image
    from bts_nb.phantoms import phantom_patient
    root.mkdir(parents=True, exist_ok=True)
    k = 0
    for s in range(n // 16 + 1):
        for im in phantom_patient(s, 16, 256)[0]:
            if k == n: return root
            Image.fromarray(im).save(root/f'{k}.png'); k += 1
    return root


def tree_rss(proc) -> int:
    try: procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess: return 0
    total = 0
    for p in procs:
        try: total += p.memory_info().rss
        except psutil.NoSuchProcess: pass
    return total


def predict(model, inp, out, workers, extra=(), kill_at=None):
    "Run bts_predict; returns seconds, peak tree RSS (MB), rows logged, exit code. `kill_at`: SIGKILL the group after that many rows."
    cmd = [str(BIN/'bts_predict'), '--model', str(model), '--input', str(inp), '--out', str(out), '--save', 'mask', '--workers', str(workers), *extra]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    ps, peak, csv = psutil.Process(p.pid), 0, Path(out)/'predictions.csv'
    while p.poll() is None:
        peak = max(peak, tree_rss(ps))
        if kill_at and csv.exists() and csv.read_bytes().count(b'\n') - 1 >= kill_at:
            os.killpg(p.pid, signal.SIGKILL); p.wait(); break
        time.sleep(0.1)
    err = p.stderr.read().decode()
    if p.returncode not in (0, -signal.SIGKILL): sys.exit(f"bts_predict failed ({p.returncode}): {err[-2000:]}")
    rows = csv.read_bytes().count(b'\n') - 1 if csv.exists() else 0
    return time.perf_counter() - t, round(peak / 2**20), rows, p.returncode


def model_load_seconds(model):
    "What a bts_predict run spends before its first slice: starting Python, importing, loading the model (one slice timed)."
    one = Path(tempfile.mkdtemp())
    write_slices(one/'in', 1)
    s, *_ = predict(model, one/'in', one/'out', 0)
    shutil.rmtree(one)
    return s


def layout_seconds(model, reps=3):
    "Seconds of one forward pass of 8 slices, channels-first against channels-last (what Segmenter uses on a CPU)."
    import torch
    from bts_nb.serialize import load_model
    m, card = load_model(model, 'cpu')
    x = torch.randn(8, 1, card['size'], card['size'])
    out = {}
    with torch.no_grad():
        for name, mm, xx in (('channels_first', m, x), ('channels_last', m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last))):
            mm(xx)
            times = []
            for _ in range(reps):
                t = time.perf_counter(); mm(xx); times.append(time.perf_counter() - t)
            out[name] = round(float(np.median(times)), 2)
    return out


def quick_model(dest, **kw):
    from bts_nb.train import TrainConfig, train
    from bts_nb.phantoms import synthetic_root
    train(TrainConfig(data=str(synthetic_root()), epochs=1, **kw), dest, verbose=False)
    return dest


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', help='the model whose pace is measured on 1 000 slices (default: the default recipe, one epoch on phantoms)')
    ap.add_argument('--n', type=int, default=10000)
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'archive'))
    a = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix='bts_archive_'))
    model = a.model or quick_model(scratch/'model')
    # the 10 000-slice run, memory and kill/resume use a small model (a ResNet-18 U-Net at 64 px), so that the streaming
    # machinery, not the network, is what is measured, in minutes rather than an hour
    small_model = quick_model(scratch/'small', arch='smp_unet', arch_kw={}, pretrained=False, size=64)
    small, big = write_slices(scratch/'s1000', min(1000, a.n)), write_slices(scratch/'s_all', a.n)
    layouts = layout_seconds(model)
    print(f"one forward pass of 8 slices: {layouts}", flush=True)
    rows = []
    def record(what, m, n, workers, run):
        secs, peak, done, _ = run
        start = model_load_seconds(m)
        rows.append(dict(run=what, slices=n, workers=workers, seconds=round(secs, 1), startup_seconds=round(start, 1),
                         slices_per_s=round(done / max(secs - start, 1e-9), 1), peak_tree_rss_mb=peak))
        print(rows[-1], flush=True)
    default_name = 'default model, 192 px' if a.model is None else str(a.model)
    for w in (0, 1):
        record(default_name, model, 1000, w, predict(model, small, scratch/f'o1000_w{w}', w))
    record('small model, 64 px', small_model, 1000, 1, predict(small_model, small, scratch/'s_o1000', 1))
    record('small model, 64 px', small_model, a.n, 1, predict(small_model, big, scratch/'s_oall', 1))
    kr = scratch/'o_kill'
    _, _, done1, rc = predict(small_model, small, kr, 1, kill_at=500)
    _, _, _, rc2 = predict(small_model, small, kr, 1, extra=('--resume',))
    t = pd.read_csv(kr/'predictions.csv')
    names = t.file.map(lambda f: Path(f).name)
    once = bool(names.is_unique and set(names) == {f'{k}.png' for k in range(1000)})
    kill = dict(killed_after_rows=done1, kill_exit=rc, resumed_exit=rc2, rows_after_resume=len(t), each_slice_once=once,
                mask_files=len(list(kr.glob('*_mask.png'))))
    print(kill, flush=True)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out/'archive.csv', index=False)
    import torch
    info = dict(command=' '.join(['python', 'bench/archive.py', *sys.argv[1:]]), cpu=cpu_name(), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                default_model=default_name if a.model else 'default recipe (smp_unet, tf_efficientnet_lite0, 192 px, fp32), 1 epoch on phantoms',
                small_model='smp_unet with a ResNet-18 encoder at 64 px, 1 epoch on phantoms', slice_px=256, save='mask', bs=8,
                forward_seconds_8_slices=layouts, rate_excludes_startup=True, kill_resume=kill,
                memory='peak RSS summed over bts_predict and its loader workers, sampled every 0.1 s')
    (out/'archive.json').write_text(json.dumps(info, indent=2))
    print(f"CPU: {info['cpu']}")
    print('| ' + ' | '.join(df.columns) + ' |\n|' + '---|' * len(df.columns))
    for r in df.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
    shutil.rmtree(scratch)
    if not once: sys.exit("a slice was predicted more or less than once after the resume")
