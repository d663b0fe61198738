"""Shared fixtures: where the real data lies, and small datasets written on the fly."""
import os
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

SHARED = Path(os.environ.get('BTS_NB_SHARED', Path(__file__).resolve().parents[2]/'shared'/'data'))
FIGSHARE, LGG = SHARED/'figshare', SHARED/'lgg'/'kaggle_3m'

needs_figshare = pytest.mark.skipif(not (FIGSHARE/'images').is_dir(), reason=f"Figshare data not found at {FIGSHARE}")
needs_lgg = pytest.mark.skipif(not LGG.is_dir(), reason=f"LGG data not found at {LGG}")


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
