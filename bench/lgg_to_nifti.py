"""Write the LGG set (kaggle_3m TIFF slices) as NIfTI volumes in the Medical Segmentation Decathlon's layout.

    python bench/lgg_to_nifti.py --data ~/data/lgg/kaggle_3m --out ~/data/lgg_nifti

One case becomes imagesTr/<case>.nii.gz (4-D: the three sequences on the last axis, uint8 as in the TIFFs) and
labelsTr/<case>.nii.gz (3-D, 0/1), with the illustrative, non-identity `LGG_AFFINE` (chapter 06b_volumes); dataset.json
names the channels. `axial_slices` of each volume gives back its TIFF slices pixel for pixel.
"""
import argparse, json
from pathlib import Path
from bts_nb.volumes import lgg_case_to_nifti

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True); ap.add_argument('--out', required=True)
    a = ap.parse_args()
    data, out = Path(a.data).expanduser(), Path(a.out).expanduser()
    cases = sorted(p for p in data.iterdir() if p.is_dir())
    if not cases: raise SystemExit(f"{data}: no case folders (<case>/<case>_<k>.tif)")
    for case in cases:
        lgg_case_to_nifti(case, out/'imagesTr'/f'{case.name}.nii.gz', out/'labelsTr'/f'{case.name}.nii.gz')
    meta = dict(name='LGG (TCGA), from kaggle_3m', modality={'0': 'pre-contrast', '1': 'FLAIR', '2': 'post-contrast'},
                labels={'0': 'background', '1': 'FLAIR abnormality'}, numTraining=len(cases),
                training=[dict(image=f'./imagesTr/{c.name}.nii.gz', label=f'./labelsTr/{c.name}.nii.gz') for c in cases])
    (out/'dataset.json').write_text(json.dumps(meta, indent=2))
    print(f"{len(cases)} cases written to {out}")
