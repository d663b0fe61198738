"""A probability threshold chosen on each cross-validation fold's validation blocks, then applied to its held-out fold.

The model card's threshold is 0.5. A model that marks too little, or nothing, on some slices might do better with a
lower one, and one that marks false regions with a higher one. Choosing it on the held-out slices would flatter the
figure, so each fold model of a `bts_train --folds` run chooses it on its own validation blocks (the blocks that chose
its best epoch) and is then scored once on its held-out fold (patients it never saw), as it would ship:

    python bench/cv_threshold.py runs/fig_cv5 --out bench/results/fig_cv5_lite0/threshold.csv

For each fold: the threshold that maximises the mean per-image Dice on validation (a grid of 0.05 to 0.95; ties go to
the one nearest 0.5), and the held-out figures at 0.5 and at the chosen threshold, compared slice by slice. The rows
'all' pool the held-out slices of every fold, each scored at its own fold's threshold. A second file
(`<out stem>_sweep.csv`) holds mean Dice against threshold on validation and held out, pooled: the held-out curve shows
what a threshold could do at best, and is not a choice. One forward pass per slice (valid and held out); the probability
maps are kept in float32 (about 0.25 MB a slice). A measurement, not a test.
"""
import argparse, json, time
from pathlib import Path
import numpy as np, pandas as pd

from bts_nb.inference import Segmenter
from bts_nb.evaluate import evaluate_dataset
from bts_nb.metrics import dice_score, image_metrics
from bts_nb.readers import read_mask
from bts_nb.splits import load_split
from cv_postprocessing import row as variant_row      # bench/, beside this script

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


class RecordingSegmenter(Segmenter):
    "A `Segmenter` that keeps every probability map it thresholds (float32), in the order `evaluate_dataset` reads them."
    def __init__(self, *args, **kwargs): super().__init__(*args, **kwargs); self.kept = []
    def mask(self, prob):
        self.kept.append(prob.astype(np.float32))
        return super().mask(prob)


def side_maps(fold_dir:Path, side:str):
    "Per-image table at the card's threshold, probability maps and truths of one side of a fold's saved split."
    seg = RecordingSegmenter(fold_dir, device='cpu')
    table = evaluate_dataset(seg, split=fold_dir/'split.csv', side=side, verbose=False)
    pairs = load_split(fold_dir/'split.csv')
    pairs = pairs[pairs.split == side]
    assert pairs['image'].tolist() == table['image'].tolist() and len(seg.kept) == len(pairs)
    truths = [read_mask(m, p.shape, i) for m, p, i in zip(pairs['mask'], seg.kept, pairs['image'])]
    return table, seg.kept, truths


def dice_curve(probs, truths) -> np.ndarray:
    "Per-image Dice (rows: images, columns: `THRESHOLDS`)."
    return np.array([[dice_score(p > t, g) for t in THRESHOLDS] for p, g in zip(probs, truths)])


def chosen_threshold(curve:np.ndarray) -> float:
    "The threshold with the highest mean Dice over the rows of `curve`; ties go to the one nearest 0.5."
    means = curve.mean(0).round(6)
    best = np.flatnonzero(means == means.max())
    return float(THRESHOLDS[best[np.argmin(np.abs(THRESHOLDS[best] - 0.5))]])


def scored(probs, truths, images, threshold) -> pd.DataFrame:
    "Per-image metrics of the masks at `threshold`."
    return pd.DataFrame([dict(image=i, **image_metrics(p > threshold, g)) for p, g, i in zip(probs, truths, images)])


def row(t:pd.DataFrame, base:pd.DataFrame, fold, threshold, valid_at_05=None, valid_at_t=None) -> dict:
    "`cv_postprocessing.row`'s figures of table `t` against `base`, with the threshold and its validation Dice."
    return dict(threshold=threshold, valid_dice_mean_at_0_5=valid_at_05, valid_dice_mean_at_threshold=valid_at_t,
                **variant_row(t, base, f'threshold {threshold}', fold))


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run', type=Path, help='a bts_train --folds run folder with all its fold models')
    p.add_argument('--out', type=Path, help='CSV to write (per fold and pooled); the sweep goes beside it')
    a = p.parse_args()
    folds = json.loads((a.run/'cv.json').read_text())['folds']
    rows, base_all, chosen_all, curves_v, curves_h = [], [], [], [], []
    for k in range(folds):
        t0 = time.time()
        fold_dir = a.run/f'fold_{k}'
        _, vp, vg = side_maps(fold_dir, 'valid')
        base, hp, hg = side_maps(fold_dir, 'test')
        cv, ch = dice_curve(vp, vg), dice_curve(hp, hg)
        thr = chosen_threshold(cv)
        chosen = scored(hp, hg, base['image'], thr)
        assert np.allclose(scored(hp, hg, base['image'], 0.5).dice, base.dice, atol=1e-9)   # the kept maps give the card's masks
        i05 = int(np.flatnonzero(THRESHOLDS == 0.5)[0]); it = int(np.flatnonzero(THRESHOLDS == thr)[0])
        rows.append(row(base, base, k, 0.5))
        rows.append(row(chosen, base, k, thr, round(float(cv[:, i05].mean()), 4), round(float(cv[:, it].mean()), 4)))
        base_all.append(base); chosen_all.append(chosen); curves_v.append(cv); curves_h.append(ch)
        print(f"fold {k}: threshold {thr} chosen on {len(vp)} validation slices; held out {len(hp)}: "
              f"{base.dice.mean():.4f} at 0.5, {chosen.dice.mean():.4f} at {thr} ({time.time() - t0:.0f} s)", flush=True)
        del vp, vg, hp, hg
    base_all, chosen_all = pd.concat(base_all, ignore_index=True), pd.concat(chosen_all, ignore_index=True)
    rows.append(row(base_all, base_all, 'all', 0.5))
    rows.append(row(chosen_all, base_all, 'all', 'per fold'))
    df = pd.DataFrame(rows)
    sweep = pd.DataFrame(dict(threshold=THRESHOLDS, valid_dice_mean=np.concatenate(curves_v).mean(0).round(4),
                              heldout_dice_mean=np.concatenate(curves_h).mean(0).round(4),
                              heldout_frac_dice_lt_0_1=(np.concatenate(curves_h) < 0.1).mean(0).round(4)))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.out, index=False)
        sweep.to_csv(a.out.with_name(a.out.stem + '_sweep.csv'), index=False)
    print(df.to_string(index=False)); print(sweep.to_string(index=False))
