"""Shared fixtures: where the real data lies, and small datasets written on the fly."""
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

SHARED = Path(os.environ.get('BTS_NB_SHARED', Path(__file__).resolve().parents[2]/'shared'/'data'))
FIGSHARE, LGG = SHARED/'figshare', SHARED/'lgg'/'kaggle_3m'

needs_figshare = pytest.mark.skipif(not (FIGSHARE/'images').is_dir(), reason=f"Figshare data not found at {FIGSHARE}")
needs_lgg = pytest.mark.skipif(not LGG.is_dir(), reason=f"LGG data not found at {LGG}")


BIN = Path(sys.executable).parent   # the console scripts installed beside this Python


def cli(name, *args, env=None, cwd=None):
    "Run the console script `name` with `args`; its CompletedProcess (stdout, stderr, returncode)."
    return subprocess.run([str(BIN/name), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def pytest_configure(config):
    """CI has the real data: there (BTS_NB_REQUIRE_DATA=1) its absence is an error, not a reason to skip the tests that need it.
    Under pytest-xdist (`-n 2`) the workers share the cores: each worker and the programs it starts get cores // workers
    threads (unless OMP_NUM_THREADS is set), so that two trainings side by side do not fight over every core."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1))
    if workers > 1 and 'OMP_NUM_THREADS' not in os.environ:
        os.environ['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // workers))   # before torch is imported in this worker
    missing = [str(p) for p in (FIGSHARE/'images', LGG) if not p.is_dir()]
    if os.environ.get('BTS_NB_REQUIRE_DATA') == '1' and missing:
        raise pytest.UsageError(f"BTS_NB_REQUIRE_DATA=1 but the real data is missing: {', '.join(missing)}")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    "Keep generated data out of the user's home during tests, shared across one session."
    monkeypatch.setenv('BTS_NB_CACHE', str(tmp_path_factory.getbasetemp()/'cache'))


def write_pair(root, stem, size=32, mask_size=None, mask=None, img_ext='.png'):
    "Write images/<stem> and masks/<stem>.png under root: a noisy square image with a bright blob and its mask."
    (root/'images').mkdir(parents=True, exist_ok=True); (root/'masks').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(stem)) % 2**32)
    img = rng.integers(0, 120, (size, size), dtype=np.uint8)
    img[size//4:size//2, size//4:size//2] = 230
    Image.fromarray(img).save(root/'images'/f'{stem}{img_ext}')
    if mask is None:
        ms = mask_size or size
        mask = np.zeros((ms, ms), np.uint8); mask[ms//4:ms//2, ms//4:ms//2] = 255
    Image.fromarray(mask).save(root/'masks'/f'{stem}.png')


@pytest.fixture
def kaggle_dir(tmp_path):
    "A tiny valid Kaggle/Figshare-layout folder with 12 numbered pairs."
    for n in range(1, 13): write_pair(tmp_path, str(n))
    return tmp_path


@pytest.fixture(scope='session')
def learned(tmp_path_factory):
    """Phantoms and a small model that really segments them, trained once per test session (about 1.5 min on 2 cores).
    Tests that compare two paths to the same masks use it, so that they compare tumours, not empty masks;
    `test_train.py::test_small_model_really_learns` holds it to a Dice floor."""
    from bts_nb.phantoms import make_synthetic
    from bts_nb.train import TrainConfig, train
    base = tmp_path_factory.mktemp('learned')
    data = make_synthetic(base/'syn', n_patients=16, n_slices=8, size=64)
    # a ResNet-18 U-Net from random weights, the recipe its floor was calibrated on (the pretrained default has its own test)
    train(TrainConfig(data=str(data), arch='smp_unet', arch_kw={}, pretrained=False, size=64, epochs=20, lr=5e-3, valid_pct=0.25),
          base/'exp', verbose=False)
    return data, base/'exp'
