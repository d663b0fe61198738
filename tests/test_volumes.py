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
    for i in (0, 1):                                                    # archive mode: two shards, then merged, as for slices
        r = cli('bts_predict', '--model', exp, '--input', volumes, '--out', tmp_path/'sh', '--shard', f'{i}/2')
        assert r.returncode == 0, r.stderr[-2000:]
    r = cli('bts_predict_merge', '--input', volumes, '--out', tmp_path/'sh')
    assert r.returncode == 0 and '2 volumes, each in exactly one shard' in r.stdout, r.stdout + r.stderr
    merged = pd.read_csv(tmp_path/'sh'/'volumes.csv')
    assert merged.file.map(lambda f: Path(f).name).tolist() == ['phantom_000.nii.gz', 'phantom_001.nii.gz']
    assert np.allclose(merged.dice, table.dice)                           # the same masks as one run
    assert sorted(p.name for p in (tmp_path/'sh').glob('*_mask.nii.gz')) == ['phantom_000_mask.nii.gz', 'phantom_001_mask.nii.gz']


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


ONE_EPOCH = ('--arch', 'smp_unet', '--encoder', 'resnet18', '--pretrained', 'false', '--size', '64', '--epochs', '1')


def _copy_set(src, dest, cases=None):
    "A Decathlon folder `dest` holding `src`'s volumes and labels (all, or the `cases` named)."
    for d in ('imagesTr', 'labelsTr'):
        (dest/d).mkdir(parents=True)
        for f in sorted((src/d).glob('*.nii.gz')):
            if cases is None or f.name.split('.')[0] in cases: (dest/d/f.name).write_bytes(f.read_bytes())
    return dest


def test_bts_train_on_decathlon_volumes_folds_by_volume(tmp_path):
    "`bts_train --folds` on a Decathlon folder: each volume is one patient, in one fold, and its tumour is reported in mL."
    from bts_nb.volumes import phantom_volumes
    root = phantom_volumes(tmp_path/'msd', n_patients=4, n_slices=8, size=64)
    r = cli('bts_train', '--data', root, '--out', tmp_path/'cv', '--folds', 2, *ONE_EPOCH)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert '32 pairs (decathlon layout), 4 patients' in r.stdout
    folds = pd.read_csv(tmp_path/'cv'/'folds.csv')
    assert folds.groupby('patient').fold.nunique().eq(1).all() and sorted(folds.patient.unique()) == [f'phantom_{i:03d}' for i in range(4)]
    assert folds.image.str.contains(r'imagesTr/phantom_\d{3}\.nii\.gz#z=\d{4}$').all()
    for i in range(2):
        split = pd.read_csv(tmp_path/'cv'/'splits'/f'fold_{i}.csv')
        assert not set(split.patient[split.split == 'test']) & set(split.patient[split.split != 'test'])
    patients = pd.read_csv(tmp_path/'cv'/'per_patient_oof.csv')
    assert len(patients) == 4 and {'pred_ml', 'gt_ml'} <= set(patients.columns)
    assert patients.gt_ml.gt(0).all()                                   # every phantom has a tumour, and its mL is from the voxel size
    card = json.loads((tmp_path/'cv'/'fold_0'/'model_card.json').read_text())
    assert 'window of the whole volume' in card['normalisation']


def test_decathlon_sets_that_cannot_train_are_refused_by_name(volumes, tmp_path):
    "Missing labels, labels off the image's grid or multi-class without a mapping, per-sequence files, 2-D and 5-D images, a cut volume."
    from bts_nb.readers import DataError, read_pairs, verify_pairs
    lab = nib.load(volumes/'labelsTr'/'phantom_001.nii.gz')
    img = nib.load(volumes/'imagesTr'/'phantom_001.nii.gz')

    def refused(name, *match, tumour_labels=None, verify=False):
        with pytest.raises(DataError) as e:
            df = read_pairs(tmp_path/name, verbose=False, tumour_labels=tumour_labels)
            if verify: verify_pairs(df)
        for m in match: assert m in str(e.value), str(e.value)
        return str(e.value)

    (_copy_set(volumes, tmp_path/'nolabel')/'labelsTr'/'phantom_001.nii.gz').unlink()
    refused('nolabel', 'imagesTr: 1 volume(s) have no label', 'phantom_001')
    nib.save(nib.Nifti1Image(np.asanyarray(lab.dataobj), np.eye(4)), _copy_set(volumes, tmp_path/'grid')/'labelsTr'/'phantom_001.nii.gz')
    refused('grid', 'labelsTr/phantom_001.nii.gz: its affine differs')
    nib.save(nib.Nifti1Image(np.asanyarray(lab.dataobj)[:, :, :-1], lab.affine), _copy_set(volumes, tmp_path/'shape')/'labelsTr'/'phantom_001.nii.gz')
    refused('shape', 'labelsTr/phantom_001.nii.gz: shape', 'on the image\'s grid')
    multi = (np.asanyarray(lab.dataobj) * 2).astype(np.uint8); multi[multi.shape[0] // 2:] *= 2   # tumour labelled 2 and 4
    nib.save(nib.Nifti1Image(multi, lab.affine), _copy_set(volumes, tmp_path/'classes')/'labelsTr'/'phantom_001.nii.gz')
    refused('classes', 'labelsTr/phantom_001.nii.gz: values 0, 2, 4', 'tumour_labels', verify=True)
    r = cli('bts_train', '--data', tmp_path/'classes', '--out', tmp_path/'run', *ONE_EPOCH)
    assert r.returncode == 2 and 'phantom_001.nii.gz: values 0, 2, 4' in r.stderr and not (tmp_path/'run').exists()
    mapped = verify_pairs(read_pairs(tmp_path/'classes', verbose=False, tumour_labels='2,4'))
    plain = verify_pairs(read_pairs(volumes, verbose=False))
    one = lambda df: df.tumour_px[df.patient == 'phantom_001'].tolist()
    assert one(mapped) == one(plain) and sum(one(plain)) > 0            # its 2 and 4 read as the 0/1 tumour
    assert mapped.tumour_px[mapped.patient == 'phantom_000'].sum() == 0  # and phantom_000's 1s are not tumour under this mapping
    with pytest.raises(DataError, match='its figshare masks are 0/255'):
        from bts_nb.phantoms import make_synthetic
        read_pairs(make_synthetic(tmp_path/'png', n_patients=1, n_slices=2, size=32), verbose=False, tumour_labels='1')
    seq = _copy_set(volumes, tmp_path/'perseq')
    (seq/'imagesTr'/'phantom_001.nii.gz').rename(seq/'imagesTr'/'phantom_001_0000.nii.gz')
    refused('perseq', 'one file per sequence (phantom_001_0000)', 'join each case')
    for name, shape in (('flat', img.shape[:2]), ('five', img.shape + (2, 1))):
        nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), img.affine), _copy_set(volumes, tmp_path/name)/'imagesTr'/'phantom_001.nii.gz')
        refused(name, f'imagesTr/phantom_001.nii.gz: a {len(shape)}-D image')
    nib.save(nib.Nifti1Image(np.zeros(img.shape + (2,), np.uint8), img.affine), _copy_set(volumes, tmp_path/'mixed')/'imagesTr'/'phantom_001.nii.gz')
    refused('mixed', 'different numbers of sequences', 'phantom_000: 1', 'phantom_001: 2')
    cut = _copy_set(volumes, tmp_path/'cut')/'imagesTr'/'phantom_001.nii.gz'
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 3])
    msg = refused('cut', '10 of 20 pairs are unusable', 'imagesTr/phantom_001.nii.gz', verify=True)
    assert msg.count('phantom_001.nii.gz') == 1 and 'phantom_000' not in msg   # one line for the volume, none for its sound neighbour


@needs_lgg
def test_lgg_as_decathlon_volumes_gives_the_tiff_slices_and_folds(tmp_path):
    "The LGG patients written as NIfTI (bench/lgg_to_nifti.py) read back as the same slices, masks, patients and 5 folds as the TIFFs."
    import subprocess, sys
    from bts_nb.data import split_sources
    from bts_nb.splits import fold_groups
    from bts_nb.readers import slice_array, read_mask
    r = subprocess.run([sys.executable, Path(__file__).parents[1]/'bench'/'lgg_to_nifti.py', '--data', LGG, '--out', tmp_path/'lgg'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path/'lgg'/'dataset.json').read_text())['numTraining'] == 20
    tiff = fold_groups(split_sources(LGG, valid_pct=0.0, seed=42, verbose=False), 5, 42)
    nifti = fold_groups(split_sources(tmp_path/'lgg', valid_pct=0.0, seed=42, verbose=False), 5, 42)
    assert nifti.attrs['layout'] == 'decathlon' and nifti.attrs['channel'] == tiff.attrs['channel'] == 'all'
    tiff['z'] = tiff.groupby('patient').cumcount(); nifti['z'] = nifti['slice']   # LGG's slices are ordered by level, _1 first
    both = tiff.merge(nifti, on=['patient', 'z'], suffixes=('_tif', '_nii'), validate='1:1')
    assert len(both) == len(tiff) == len(nifti) == 738
    assert (both.fold_tif == both.fold_nii).all() and (both.tumour_px_tif == both.tumour_px_nii).all()
    for _, row in both.sample(12, random_state=0).iterrows():           # pixel for pixel, the three sequences and the mask
        assert np.array_equal(slice_array(row.image_tif, 'all'), slice_array(row.image_nii, 'all'))
        assert np.array_equal(read_mask(row.mask_tif), read_mask(row.mask_nii))


def test_bts_train_on_brats_case_folders_with_the_users_naming_rule(tmp_path):
    "BraTS's layout, a NIfTI file per sequence: the sequences the user names become the channels, labels map by --tumour_labels."
    import yaml
    from bts_nb.volumes import phantom_brats
    root = phantom_brats(tmp_path/'brats', n_patients=4, n_slices=8, size=64)
    r = cli('bts_train', '--data', root, '--out', tmp_path/'run', '--sequences', 't1ce,t2,flair', '--tumour_labels', '1,2,4', '--valid_pct', 0.25, *ONE_EPOCH)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert '32 pairs (brats layout), 4 patients' in r.stdout
    cfg = yaml.safe_load((tmp_path/'run'/'config.yaml').read_text())
    assert cfg['sequences'] == ['t1ce', 't2', 'flair'] and cfg['tumour_labels'] == [1, 2, 4]
    card = json.loads((tmp_path/'run'/'model_card.json').read_text())
    assert card['n_in'] == 3 and card['channel'] == 'all'
    split = pd.read_csv(tmp_path/'run'/'split.csv')
    assert split.image.str.endswith('&seq=t1ce,t2,flair').all() and split['mask'].str.endswith('&label=1,2,4').all()
    assert not set(split.patient[split.split == 'train']) & set(split.patient[split.split == 'valid'])
    assert pd.read_csv(tmp_path/'run'/'per_image_valid.csv').gt_px.sum() > 0   # labels 2 and 4 read as tumour
    r = cli('bts_train', '--data', root, '--out', tmp_path/'four', *ONE_EPOCH)   # four sequences, none named: asked, nothing written
    assert r.returncode == 2 and 'the cases hold 4 sequences (flair, t1, t1ce, t2)' in r.stderr and not (tmp_path/'four').exists()


def test_brats_sets_that_cannot_train_are_refused_by_name(tmp_path):
    from bts_nb.readers import DataError, read_pairs
    from bts_nb.volumes import phantom_brats
    root = phantom_brats(tmp_path/'brats', n_patients=2, n_slices=6, size=48)
    one = root/'phantom_001'
    with pytest.raises(DataError, match='sequences flair,t2: a model reads one sequence or three'): read_pairs(root, sequences='flair,t2', verbose=False)
    with pytest.raises(DataError, match='sequences names BraTS'): read_pairs(root.parent, layout='decathlon', sequences='flair', verbose=False)
    t2 = nib.load(one/'phantom_001_t2.nii.gz')
    nib.save(nib.Nifti1Image(np.asanyarray(t2.dataobj), np.eye(4)), one/'phantom_001_t2.nii.gz')
    with pytest.raises(DataError, match=r'phantom_001_t2.nii.gz: its affine differs from its image\'s; each sequence must lie'):
        read_pairs(root, sequences='t1ce,t2,flair', verbose=False, tumour_labels='2,4')
    (one/'phantom_001_t2.nii.gz').unlink()
    with pytest.raises(DataError, match=r'phantom_001: no t2 file'): read_pairs(root, sequences='t1ce,t2,flair', verbose=False)
    (one/'phantom_001_seg.nii.gz').unlink()
    (root/'phantom_000'/'phantom_000_seg.nii.gz').rename(root/'phantom_000'/'phantom_000_seg.nii.gz.bak')
    with pytest.raises(DataError, match=r'2 case\(s\) have no label \(<case>_seg.nii.gz\): phantom_000, phantom_001'):
        read_pairs(root, layout='brats', sequences='flair', verbose=False)


def test_bts_predict_on_dicom_series_writes_a_nifti_mask_and_a_seg(learned, volumes, tmp_path):
    "A study folder of DICOM series: each gets a NIfTI mask on the series' grid and a DICOM SEG with the same voxels; a broken series is named."
    import shutil
    from bts_nb.dicom import volume_to_dicom, read_dicom_series, read_dicom_seg
    from bts_nb.volumes import read_volume
    from bts_nb.metrics import dice_score
    data, exp = learned
    study = tmp_path/'study'
    src, lab = read_volume(volumes/'imagesTr'/'phantom_000.nii.gz'), read_volume(volumes/'labelsTr'/'phantom_000.nii.gz')
    volume_to_dicom(src, study/'t1ce_axial')
    two = volume_to_dicom(src, study/'two_series')
    volume_to_dicom(read_volume(volumes/'imagesTr'/'phantom_001.nii.gz'), tmp_path/'other')
    shutil.copy(next((tmp_path/'other').iterdir()), two/'from_another_series.dcm')
    gap = volume_to_dicom(src, study/'with_gap', seed=1)
    sorted(gap.iterdir(), key=lambda f: float(__import__('pydicom').dcmread(f).ImagePositionPatient[2]))[3].unlink()
    r = cli('bts_predict', '--model', exp, '--input', study, '--out', tmp_path/'out')
    assert r.returncode == 1, r.stderr[-2000:]                           # two of three failed: said by the exit status
    table = pd.read_csv(tmp_path/'out'/'volumes.csv').assign(name=lambda t: t.file.map(lambda f: Path(f).name)).set_index('name')
    assert table.status.to_dict() == {'t1ce_axial': 'ok', 'two_series': 'error', 'with_gap': 'error'}
    assert 'two_series: holds 2 series' in table.error['two_series'] and 'a slice is missing' in table.error['with_gap']
    assert sorted(p.name for p in (tmp_path/'out').iterdir() if p.suffix in ('.gz', '.dcm')) == ['t1ce_axial_mask.nii.gz', 't1ce_axial_seg.dcm']
    img, dss = read_dicom_series(study/'t1ce_axial')
    mask = nib.load(tmp_path/'out'/'t1ce_axial_mask.nii.gz')
    assert mask.shape == img.shape and np.allclose(mask.affine, img.affine)
    voxels = np.asanyarray(mask.dataobj)
    assert np.array_equal(read_dicom_seg(tmp_path/'out'/'t1ce_axial_seg.dcm', dss), voxels)   # the SEG holds the NIfTI's voxels
    truth = np.asanyarray(nib.as_closest_canonical(lab).dataobj)
    assert dice_score(np.asanyarray(nib.as_closest_canonical(mask).dataobj), truth) > 0.5   # on the patient's tumour, in world space
    assert table.tumour_ml['t1ce_axial'] == pytest.approx(voxels.sum() * 0.9 * 0.9 * 3 / 1000, rel=1e-4)
