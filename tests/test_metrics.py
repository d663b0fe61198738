"""HD95 cross-checked against MONAI on random and edge-case masks.

bts_nb's outline is 8-connected (a pixel with any of its 8 neighbours outside); MONAI's and medpy's is 4-connected.
So: on bts_nb's outlines, HD95 and HD100 must equal what MONAI's own surface-distance code gives; on the edge cases
HD100 must equal MONAI's end to end; and on random blobs the two conventions must stay within a pixel on average."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from monai.metrics import compute_hausdorff_distance
from monai.metrics.utils import get_surface_distance

from bts_nb.metrics import hausdorff, hd95, mask_outline


def blob(rng, n=64):
    m = ndimage.gaussian_filter(rng.random((n, n)), rng.uniform(1.5, 6))
    return m > np.quantile(m, rng.uniform(0.6, 0.99))


def edge_cases(n=32):
    z = np.zeros((n, n), bool)
    one = z.copy(); one[5, 7] = True
    corner = z.copy(); corner[0, 0] = True
    line = z.copy(); line[10, 2:30] = True
    diag = np.eye(n, dtype=bool)
    full = np.ones((n, n), bool)
    square = z.copy(); square[8:20, 8:20] = True
    ring = square.copy(); ring[11:17, 11:17] = False
    border = z.copy(); border[:, -3:] = True
    masks = [one, corner, line, diag, full, square, ring, border]
    return [(a, b) for a in masks for b in masks]


def monai_hd(p, g, percentile=None):
    t = lambda m: torch.as_tensor(m)[None, None].float()
    return compute_hausdorff_distance(t(p), t(g), include_background=True, percentile=percentile).item()


def pairs():
    rng = np.random.default_rng(0)
    return [(blob(rng), blob(rng)) for _ in range(60)] + edge_cases()


def test_hd95_and_hd100_equal_monai_distances_on_our_outlines():
    for p, g in pairs():
        po, go = mask_outline(p), mask_outline(g)
        d1, d2 = get_surface_distance(po, go), get_surface_distance(go, po)
        assert hd95(p, g) == pytest.approx(max(np.percentile(d1, 95), np.percentile(d2, 95)), abs=1e-4)
        assert hausdorff(p, g, 100) == pytest.approx(max(d1.max(), d2.max()), abs=1e-4)


def test_edge_cases_hd100_equals_monai():
    for p, g in edge_cases():
        assert hausdorff(p, g, 100) == pytest.approx(monai_hd(p, g), abs=1e-4)


def test_close_to_monai_4_connected():
    "The two outline conventions differ by little on random blobs: HD95 within 1 px on average, HD100 mostly equal."
    blobs = pairs()[:60]
    diffs = np.array([hd95(p, g) - monai_hd(p, g, 95) for p, g in blobs])
    assert abs(diffs.mean()) < 1.0 and np.abs(diffs).max() < 6
    same100 = np.mean([abs(hausdorff(p, g, 100) - monai_hd(p, g)) < 1e-4 for p, g in blobs])
    assert same100 >= 0.9


def test_empty_mask_conventions():
    z, m = np.zeros((16, 16), bool), np.zeros((16, 16), bool); m[4:8, 4:8] = True
    assert hd95(z, z) == 0.0                                  # both empty: perfect (MONAI gives nan)
    assert hd95(m, z) == hd95(z, m) == pytest.approx(np.hypot(16, 16))   # one empty: the diagonal (MONAI gives inf)
    assert hd95(m, z, empty_distance=50) == 50
