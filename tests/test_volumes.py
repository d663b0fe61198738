"""NIfTI volumes through bts_predict: masks in the input's geometry (shape, affine) whatever its orientation, one row per
volume with tumour mL and volumetric Dice, the same Dice as the model gives on the TIFF slices of an LGG patient, and
bad volumes or labels refused by name while the others are segmented."""
import json
from pathlib import Path
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import LGG, needs_lgg, cli


@pytest.fixture(scope='module')
def volumes(tmp_path_factory):
    from bts_nb.volumes import phantom_volumes
    return phantom_volumes(tmp_path_factory.mktemp('vols')/'decathlon', n_patients=2, n_slices=10, size=64)


def test_bts_predict_writes_masks_in_the_volumes_geometry(learned, volumes, tmp_path):
    data, exp = learned
    r = cli('bts_predict', '--model', exp, '--input', volumes, '--out', tmp_path/'out')
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    table = pd.read_csv(tmp_path/'out'/'volumes.csv')
    assert len(table) == 2 and (table.status == 'ok').all() and table.has_truth.all()
    assert (table.dice > 0.5).all(), table.dice                         # the phantom tumours are found in 3-D
    for f in sorted((volumes/'imagesTr').glob('*.nii.gz')):
        img, mask = nib.load(f), nib.load(tmp_path/'out'/f.name.replace('.nii.gz', '_mask.nii.gz'))
        assert mask.shape == img.shape and np.allclose(mask.affine, img.affine) and mask.get_data_dtype() == np.uint8
        assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}
    row = table.iloc[0]
    assert row.tumour_ml == pytest.approx(row.voxel_ml * nib.load(tmp_path/'out'/'phantom_000_mask.nii.gz').get_fdata().sum())
    r = cli('bts_predict', '--model', exp, '--input', volumes, '--out', tmp_path/'out')
    assert r.returncode == 2 and 'already holds phantom_000_mask.nii.gz' in r.stderr
    r = cli('bts_predict', '--model', exp, '--input', volumes, '--out', tmp_path/'sh', '--shard', '0/2')
    assert r.returncode == 2 and 'volumes are not split into shards' in r.stderr


def test_any_orientation_gives_the_same_mask_in_world_space(learned, volumes, tmp_path):
    "One volume stored RAS, PLS (the phantoms' order) and tilted: the masks agree voxel for voxel once put in RAS."
    from bts_nb.inference import Segmenter
    from bts_nb.volumes import predict_volume, axial_slices, to_volume, write_mask_like
    data, exp = learned
    seg = Segmenter(exp, device='cpu')
    src = nib.load(volumes/'imagesTr'/'phantom_000.nii.gz')
    slices = axial_slices(src)
    tilt = np.deg2rad(20)
    affines = {'ras': np.diag([0.9, 0.9, 3.0, 1.0]),
               'tilted_lps': np.array([[-0.9, 0, 0, 0], [0, -0.9 * np.cos(tilt), -3 * np.sin(tilt), 0], [0, -0.9 * np.sin(tilt), 3 * np.cos(tilt), 0], [0, 0, 0, 1]])}
    masks = {'pls': axial_slices(nib.load(_predict(seg, volumes/'imagesTr'/'phantom_000.nii.gz', tmp_path/'pls')))}
    z, h, w = slices.shape
    for name, aff in affines.items():                                   # neither permutes the axes: stored as (x, y, z)
        ref = nib.Nifti1Image(np.zeros((w, h, z), np.uint8), aff)
        write_mask_like(to_volume(slices, ref), ref, tmp_path/f'{name}.nii.gz')
        assert np.array_equal(axial_slices(nib.load(tmp_path/f'{name}.nii.gz')), slices)
        masks[name] = axial_slices(nib.load(_predict(seg, tmp_path/f'{name}.nii.gz', tmp_path/name)))
    assert masks['pls'].sum() > 0
    assert np.array_equal(masks['pls'], masks['ras']) and np.array_equal(masks['pls'], masks['tilted_lps'])
    with pytest.raises(FileNotFoundError): predict_volume(seg, tmp_path/'missing.nii.gz', tmp_path)


def _predict(seg, path, out):
    from bts_nb.volumes import predict_volume
    out.mkdir()
    predict_volume(seg, path, out)
    return next(out.glob('*_mask.nii.gz'))


def test_bad_volumes_and_labels_are_named_and_the_rest_segmented(learned, volumes, tmp_path):
    data, exp = learned
    root = tmp_path/'set'
    for d in ('imagesTr', 'labelsTr'): (root/d).mkdir(parents=True)
    good = volumes/'imagesTr'/'phantom_000.nii.gz'
    (root/'imagesTr'/'a_good.nii.gz').write_bytes(good.read_bytes())
    (root/'labelsTr'/'a_good.nii.gz').write_bytes((volumes/'labelsTr'/'phantom_000.nii.gz').read_bytes())
    raw = good.read_bytes(); (root/'imagesTr'/'b_cut.nii.gz').write_bytes(raw[:len(raw) // 3])
    (root/'imagesTr'/'c_grid.nii.gz').write_bytes(raw)
    lab = nib.load(volumes/'labelsTr'/'phantom_000.nii.gz')
    nib.save(nib.Nifti1Image(np.asanyarray(lab.dataobj), np.eye(4)), root/'labelsTr'/'c_grid.nii.gz')
    (root/'imagesTr'/'d_classes.nii.gz').write_bytes(raw)
    nib.save(nib.Nifti1Image((np.asanyarray(lab.dataobj) * 3).astype(np.uint8), lab.affine), root/'labelsTr'/'d_classes.nii.gz')
    r = cli('bts_predict', '--model', exp, '--input', root, '--out', tmp_path/'out')
    assert r.returncode == 1, r.stderr[-2000:]                           # some failed: said by the exit status
    table = pd.read_csv(tmp_path/'out'/'volumes.csv').set_index(pd.read_csv(tmp_path/'out'/'volumes.csv').file.map(lambda f: Path(f).name))
    assert table.status.to_dict() == {'a_good.nii.gz': 'ok', 'b_cut.nii.gz': 'error', 'c_grid.nii.gz': 'error', 'd_classes.nii.gz': 'error'}
    assert 'b_cut.nii.gz: not a readable NIfTI file' in table.error['b_cut.nii.gz']
    assert 'c_grid.nii.gz: its affine differs' in table.error['c_grid.nii.gz']
    assert 'values 0, 3' in table.error['d_classes.nii.gz']
    assert sorted(p.name for p in (tmp_path/'out').glob('*.nii.gz')) == ['a_good_mask.nii.gz']   # nothing written for a refused volume


@needs_lgg
def test_lgg_patient_as_nifti_gives_the_tiff_dice(learned, tmp_path):
    "An LGG patient written as a 4-D NIfTI (bench/lgg_to_nifti.py's function): the volume's Dice equals the Dice of the model's masks on its TIFF slices."
    from bts_nb.inference import Segmenter
    from bts_nb.readers import slice_array, read_mask, slice_order_key, to_uint8
    from bts_nb.metrics import dice_score
    from bts_nb.volumes import lgg_case_to_nifti, predict_volume
    data, exp = learned
    seg = Segmenter(exp, device='cpu')                                  # one channel: FLAIR, plane 1 of the TIFFs and of the volume
    case = LGG/'TCGA_CS_6667_20011105'
    img, lab = lgg_case_to_nifti(case, tmp_path/'img.nii.gz', tmp_path/'lab.nii.gz')
    assert nib.load(img).shape[3] == 3 and nib.aff2axcodes(nib.load(img).affine) == ('L', 'P', 'S')
    tifs = sorted((f for f in case.glob('*.tif') if not f.stem.endswith('_mask')), key=lambda f: slice_order_key(f.stem))
    probs, _ = seg.probs([to_uint8(slice_array(f, 1)) for f in tifs])
    pred = np.stack([seg.mask(p) for p in probs]); truth = np.stack([read_mask(f.with_name(f.stem + '_mask.tif')) for f in tifs])
    row = predict_volume(seg, img, tmp_path, lab, channel=1)
    assert row['dice'] == pytest.approx(dice_score(pred, truth), abs=1e-12)
    assert row['tumour_ml'] == pytest.approx(pred.sum() * row['voxel_ml']) and row['truth_ml'] == pytest.approx(truth.sum() * row['voxel_ml'])
    assert truth.sum() > 0 and pred.sum() > 0                          # tumour on both sides: the comparison is not of empty volumes
    card = json.loads((exp/'model_card.json').read_text())
    assert card['n_in'] == 1
