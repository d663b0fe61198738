"""Write the LGG set (kaggle_3m TIFF slices) as NIfTI volumes in the Medical Segmentation Decathlon's layout, and compare
a cross-validation on that copy with the same one on the TIFFs.

    python bench/lgg_to_nifti.py --data ~/data/lgg/kaggle_3m --out ~/data/lgg_nifti
    bts_train --data ~/data/lgg_nifti --out runs/lgg_cv5_nifti --folds 5
    python bench/lgg_channels.py --record runs/lgg_cv5_nifti bench/results/lgg_cv5_nifti
    python bench/lgg_to_nifti.py --compare bench/results/lgg_cv5_ft bench/results/lgg_cv5_nifti

One case becomes imagesTr/<case>.nii.gz (4-D: the three sequences on the last axis, uint8 as in the TIFFs) and
labelsTr/<case>.nii.gz (3-D, 0/1), with the illustrative, non-identity `LGG_AFFINE` (chapter 06b_volumes); dataset.json
names the channels. `axial_slices` of each volume gives back its TIFF slices pixel for pixel.

`--compare TIFF NIFTI` pairs the two records' out-of-fold slices by patient and slice number (the TIFFs' `_k`, the
volume's axial index) and writes bench/results/nifti_vs_tiff_lgg.csv (each patient: its fold and volumetric Dice on both)
and nifti_vs_tiff_lgg.json (the largest differences, and whether every patient kept its fold).
"""
import argparse, json, os
from pathlib import Path
import pandas as pd

RESULTS = Path(__file__).parent/'results'


def convert(data:Path, out:Path):
    from bts_nb.volumes import lgg_case_to_nifti
    cases = sorted(p for p in data.iterdir() if p.is_dir())
    if not cases: raise SystemExit(f"{data}: no case folders (<case>/<case>_<k>.tif)")
    for case in cases:
        lgg_case_to_nifti(case, out/'imagesTr'/f'{case.name}.nii.gz', out/'labelsTr'/f'{case.name}.nii.gz')
    meta = dict(name='LGG (TCGA), from kaggle_3m', modality={'0': 'pre-contrast', '1': 'FLAIR', '2': 'post-contrast'},
                labels={'0': 'background', '1': 'FLAIR abnormality'}, numTraining=len(cases),
                training=[dict(image=f'./imagesTr/{c.name}.nii.gz', label=f'./labelsTr/{c.name}.nii.gz') for c in cases])
    (out/'dataset.json').write_text(json.dumps(meta, indent=2))
    print(f"{len(cases)} cases written to {out}")


def slices(cv:Path) -> pd.DataFrame:
    "A record's out-of-fold slices keyed by (patient, z): z is the volume's axial index, or the TIFF's _k less one."
    from bts_nb.readers import parse_slice_ref
    t = pd.read_csv(cv/'per_image_oof.csv')
    ref = t.image.map(parse_slice_ref)
    t['z'] = [r['z'] if r else int(Path(p).stem.rsplit('_', 1)[-1]) - 1 for r, p in zip(ref, t.image)]
    return t.set_index(['patient', 'z'])


def compare(tiff:Path, nifti:Path, out:Path=RESULTS) -> dict:
    a, b = slices(tiff), slices(nifti)
    if set(a.index) != set(b.index): raise SystemExit(f"{tiff} and {nifti} score different slices")
    b = b.loc[a.index]
    pats = pd.read_csv(tiff/'per_patient_oof.csv')[['patient', 'fold', 'gt_px', 'dice']].merge(
        pd.read_csv(nifti/'per_patient_oof.csv')[['patient', 'fold', 'dice']], on='patient', suffixes=('_tiff', '_nifti'))
    pats['difference'] = pats.dice_nifti - pats.dice_tiff
    pats.sort_values('dice_tiff').to_csv(out/'nifti_vs_tiff_lgg.csv', index=False, float_format='%.4f')
    summary = dict(patients=len(pats), slices=len(a), same_folds=bool((pats.fold_tiff == pats.fold_nifti).all()),
                   same_slice_folds=bool((a.fold == b.fold).all()),
                   patient_dice_mean_tiff=round(float(pats.dice_tiff.mean()), 4), patient_dice_mean_nifti=round(float(pats.dice_nifti.mean()), 4),
                   patient_dice_median_tiff=round(float(pats.dice_tiff.median()), 4), patient_dice_median_nifti=round(float(pats.dice_nifti.median()), 4),
                   largest_patient_difference=float(pats.difference.abs().max()),
                   largest_slice_dice_difference=float((a.dice - b.dice).abs().max()),
                   slices_with_other_pixels=int((a.pred_px != b.pred_px).sum()),
                   records=[os.path.relpath(tiff), os.path.relpath(nifti)])
    (out/'nifti_vs_tiff_lgg.json').write_text(json.dumps(summary, indent=2) + '\n')
    print(json.dumps(summary, indent=2))
    return summary


def markdown(out:Path=RESULTS):
    "The results page's table: each patient's volumetric Dice from both records."
    pats = pd.read_csv(out/'nifti_vs_tiff_lgg.csv')
    s = json.loads((out/'nifti_vs_tiff_lgg.json').read_text())
    print('| patient | fold (TIFF / NIfTI) | tumour px | volumetric Dice, TIFF | volumetric Dice, NIfTI |')
    print('|---|---|---|---|---|')
    for r in pats.itertuples(): print(f'| {r.patient} | {r.fold_tiff} / {r.fold_nifti} | {r.gt_px} | {r.dice_tiff:.4f} | {r.dice_nifti:.4f} |')
    print(f"| **mean / median** | | | **{s['patient_dice_mean_tiff']:.4f} / {s['patient_dice_median_tiff']:.4f}** | "
          f"**{s['patient_dice_mean_nifti']:.4f} / {s['patient_dice_median_nifti']:.4f}** |")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data'); ap.add_argument('--out')
    ap.add_argument('--compare', nargs=2, metavar=('TIFF', 'NIFTI'), type=Path, help='two recorded cross-validations on the same folds')
    a = ap.parse_args()
    if a.compare: compare(*a.compare)
    elif a.data and a.out: convert(Path(a.data).expanduser(), Path(a.out).expanduser())
    else: ap.error('give --data and --out to convert, or --compare TIFF NIFTI')
