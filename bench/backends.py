"""Slices/s of the default network on this CPU through each inference backend: eager PyTorch, TorchScript, ONNX Runtime,
and OpenVINO (in float32, and in bfloat16 where the CPU has it) when the `openvino` package is installed.

    python bench/backends.py [--sizes 192 256] [--n 192] [--bs 8] [--data ~/data/figshare] [--backends torch onnx ...]

Speed does not depend on the weights, so the network is the default one (smp_unet with the packaged, pretrained lite0
encoder, one input channel), built at each input size into a temporary run folder and exported with `export_onnx` and
`export_torchscript`. Each row is a fresh process: `startup_s` runs from the process's start to its first batch done
(imports, loading, ONNX Runtime's session), then `n` slices (real ones from --data, else phantoms) go through
`Segmenter.probs` in batches of `bs`, resized back to their own size as bts_predict does. `peak_rss_mb` is the
process's peak resident memory; `max_prob_diff` the largest difference from eager PyTorch's probabilities on those
slices. Writes bench/results/inference_backends.csv. Timings, not tests: on a 2-core machine repeated runs vary by up to a third.
"""
import time
T0 = time.perf_counter()                 # before the imports: start-up counts them
import argparse, importlib.util, json, os, resource, subprocess, sys, tempfile
from pathlib import Path
import numpy as np, pandas as pd

BACKENDS = ('torch', 'torchscript', 'onnx', 'openvino', 'openvino_bf16')


class OpenVinoModel:
    "model.onnx compiled by OpenVINO for the CPU at `precision` (f32 or bf16), called like the PyTorch model. The bench's only: bts_nb does not use it."
    def __init__(self, path, precision):
        import openvino as ov
        self.compiled = ov.Core().compile_model(str(path), 'CPU', {'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_PRECISION_HINT': precision})
        self.request = self.compiled.create_infer_request()
    def __call__(self, x):
        import torch
        return torch.from_numpy(self.request.infer({0: x.numpy()})[self.compiled.output(0)].copy())


def slices(n, data):
    from bts_nb.readers import read_slice_u8, read_pairs
    from bts_nb.phantoms import phantom_patient
    if data: return [read_slice_u8(p) for p in read_pairs(data, verbose=False).image[:n]]
    return [im for s in range(n // 8 + 1) for im in phantom_patient(s, 8, 256)[0]][:n]


def one_row(run, backend, n, bs, data, probs_out):
    "Run in a fresh process: start-up, slices/s and peak memory of one backend."
    import torch
    from bts_nb.inference import Segmenter
    seg = Segmenter(run, device='cpu', backend='onnx' if backend == 'onnx' else 'torch')
    if backend == 'torchscript': seg.models = [torch.jit.load(str(Path(run)/'model.torchscript.pt'))]
    if backend.startswith('openvino'): seg.models = [OpenVinoModel(Path(run)/'model.onnx', 'bf16' if backend.endswith('bf16') else 'f32')]
    imgs = slices(n, data)
    seg.probs(imgs[:bs])                                                   # the first batch ends start-up
    startup = time.perf_counter() - T0
    t, probs = time.perf_counter(), []
    for i in range(0, n, bs): probs += seg.probs(imgs[i:i+bs])[0]
    dt = time.perf_counter() - t
    np.save(probs_out, np.stack(probs).astype(np.float32))
    return dict(backend=backend, size=seg.size, n=n, bs=bs, slices_per_s=round(n / dt, 1), startup_s=round(startup, 1),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), threads=torch.get_num_threads())


def default_run(size, dest) -> Path:
    "A run folder holding the default network at `size`, untrained past its encoder, with model.onnx and model.torchscript.pt."
    import warnings
    from bts_nb.models import build_model
    from bts_nb.serialize import save_weights, save_card
    from bts_nb.onnx_runtime import export_onnx
    from bts_nb.inference import export_torchscript
    model = build_model('smp_unet', n_in=1, size=size, pretrained=True, encoder='tf_efficientnet_lite0')
    save_weights(model, dest/'model.safetensors')
    save_card(dict(arch='smp_unet', arch_kw=dict(encoder='tf_efficientnet_lite0'), size=size, n_in=1, channel=None, threshold=0.5), dest/'model_card.json')
    export_onnx(dest)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        export_torchscript(dest)
    return dest


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', type=int, nargs='+', default=[192, 256]); ap.add_argument('--data')
    ap.add_argument('--n', type=int, default=192); ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--backends', nargs='+', default=[b for b in BACKENDS if not b.startswith('openvino') or importlib.util.find_spec('openvino')])
    ap.add_argument('--one', nargs=2, metavar=('RUN', 'BACKEND')); ap.add_argument('--probs_out')
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_row(a.one[0], a.one[1], a.n, a.bs, a.data, a.probs_out))); sys.exit()
    sys.path.insert(0, str(Path(__file__).parent))
    from encoders import cpu_name                                          # bench/encoders.py: the CPU's name, beside every timing
    flags = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    cpu = cpu_name() + (' (bf16)' if any(f in flags for f in ('avx512_bf16', 'amx_bf16')) else '')
    rows, tmp = [], Path(tempfile.mkdtemp())
    for size in a.sizes:
        run = default_run(size, tmp/f'run{size}')
        for backend in a.backends:
            cmd = [sys.executable, __file__, '--one', str(run), backend, '--n', str(a.n), '--bs', str(a.bs), '--probs_out', str(tmp/f'{backend}{size}.npy')]
            if a.data: cmd += ['--data', a.data]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode: sys.exit(f"{backend} at {size} px failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            ref = tmp/f'torch{size}.npy'
            row['max_prob_diff'] = float(f"{np.abs(np.load(tmp/f'{backend}{size}.npy') - np.load(ref)).max():.1e}") if ref.exists() else None
            row.update(slices='figshare' if a.data else 'phantoms', cpu=cpu, cores=os.cpu_count())
            rows.append(row); print(row, flush=True)
    df = pd.DataFrame(rows)
    base = df[df.backend == 'torch'].set_index('size').slices_per_s
    df.insert(df.columns.get_loc('slices_per_s') + 1, 'speedup', (df.slices_per_s / df['size'].map(base)).round(2))
    dest = Path(__file__).parent/'results'/'inference_backends.csv'
    df.to_csv(dest, index=False)
    print(df.to_string(index=False))
