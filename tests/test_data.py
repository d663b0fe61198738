"""Data readers: real layouts, splits that keep patients whole, and every kind of bad input named in the error."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image
import tifffile

from bts_nb.readers import DataError, read_pairs, verify_pairs, figshare_pairs, lgg_pairs, folder_pairs
from bts_nb.phantoms import make_synthetic
from bts_nb.splits import split_pairs, shared_groups, save_split, load_split
from bts_nb.data import seg_dataloaders, multi_source_split
from conftest import FIGSHARE, LGG, needs_figshare, needs_lgg, write_pair


# --- real data ---------------------------------------------------------------------------------------------

@needs_figshare
def test_figshare_all_pairs_found_and_valid():
    df = read_pairs(FIGSHARE)
    assert len(df) == 2575 and df.attrs['layout'] == 'figshare'
    assert df.number.is_monotonic_increasing
    checked = verify_pairs(df)
    assert (checked.tumour_px > 0).all()          # every Figshare slice shows a tumour
    assert set(zip(checked.height, checked.width)) == {(256, 256)}


@needs_figshare
def test_figshare_block_split_is_contiguous_and_disjoint():
    df = split_pairs(read_pairs(FIGSHARE, verbose=False), valid_pct=0.15, test_pct=0.15)
    assert shared_groups(df, 'block') == []
    assert set(df.split) == {'train', 'valid', 'test'}
    # blocks are contiguous runs of the numbering: each block's numbers form one interval of the sorted order
    for _, g in df.groupby('block'):
        assert g.order.max() - g.order.min() + 1 == len(g)
    assert 0.10 < (df.split == 'valid').mean() < 0.20


@needs_lgg
def test_lgg_20_patients_split_by_case(capsys):
    df = read_pairs(LGG.parent)                   # the folder above kaggle_3m works too
    assert df.patient.nunique() == 20 and df.attrs['layout'] == 'lgg'
    assert '20 patients' in capsys.readouterr().out
    checked = verify_pairs(df, channel=1)
    assert (checked.tumour_px == 0).sum() > 0     # LGG has slices without tumour
    split = split_pairs(checked, valid_pct=0.2, test_pct=0.2)
    assert shared_groups(split) == []
    assert all(split.groupby('split').patient.nunique() >= 1)


@needs_lgg
def test_lgg_loader_reads_three_sequences_or_flair():
    dls = seg_dataloaders(LGG, size=64, bs=4, verify=False, verbose=False)
    assert dls.channel == 'all'                                     # the default: pre-contrast, FLAIR, post-contrast
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 3, 64, 64) and yb.shape == (4, 64, 64)
    flair = seg_dataloaders(LGG, size=64, bs=4, verify=False, verbose=False, channel=1)
    assert flair.channel == 1 and flair.one_batch()[0].shape == (4, 1, 64, 64)


# --- splits ---------------------------------------------------------------------------------------------------

def test_synthetic_block_split_never_cuts_a_patient(tmp_path):
    root = make_synthetic(tmp_path/'syn', n_patients=10, n_slices=8, size=64)
    truth = pd.read_csv(root/'patients.csv').set_index('number')['patient']
    df = split_pairs(read_pairs(root, verbose=False), valid_pct=0.2, n_blocks=5)
    df['true_patient'] = df.number.map(truth)
    assert shared_groups(df, 'true_patient') == []


def test_split_is_deterministic_and_saved(kaggle_dir, tmp_path):
    a = split_pairs(read_pairs(kaggle_dir, verbose=False), valid_pct=0.25, n_blocks=4, snap=0, seed=3)
    b = split_pairs(read_pairs(kaggle_dir, verbose=False), valid_pct=0.25, n_blocks=4, snap=0, seed=3)
    assert a.split.tolist() == b.split.tolist()
    path = save_split(a, tmp_path/'split.csv')
    assert load_split(path).split.tolist() == a.split.tolist()
    (kaggle_dir/'images'/'3.png').unlink()
    with pytest.raises(DataError, match='3.png'): load_split(path)


def test_loaders_default_to_synthetic_data():
    dls = seg_dataloaders(size=64, bs=4, verbose=False)
    assert len(dls.pairs) == 240 and dls.pairs.patient.notna().all() and shared_groups(dls.pairs, 'patient') == []
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 1, 64, 64)
    assert abs(float(xb.mean())) < 0.1            # per-image z-scored
    assert set(yb.unique().tolist()) <= {0, 1}


def test_synthetic_generation_is_deterministic(tmp_path):
    a, b = make_synthetic(tmp_path/'a', 2, 3, 48, seed=5), make_synthetic(tmp_path/'b', 2, 3, 48, seed=5)
    for n in range(1, 7):
        assert (a/'images'/f'{n}.png').read_bytes() == (b/'images'/f'{n}.png').read_bytes()
    with pytest.raises(FileExistsError): make_synthetic(a, 2, 3, 48)


# --- bad input: each error names the file and the problem ------------------------------------------------

def test_path_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r'nowhere: dataset folder does not exist'): read_pairs(tmp_path/'nowhere')


def test_same_images_in_two_sources_refused(tmp_path):
    "A data set listed twice, directly or through a link, would put each slice on both sides of the split: refused, naming a file."
    syn = make_synthetic(tmp_path/'syn', n_patients=5, n_slices=6, size=32)
    (tmp_path/'link').symlink_to(syn)
    for second in (syn, tmp_path/'link'):
        with pytest.raises(DataError, match=r'the same image is in two sources: .*images/1\.png'):
            multi_source_split([syn, second], valid_pct=0.25, verbose=False)
    other = make_synthetic(tmp_path/'other', n_patients=5, n_slices=6, size=32, seed=1)
    assert len(multi_source_split([syn, other], valid_pct=0.25, verbose=False)) == 60     # two distinct sets are fine


def test_missing_masks_folder(kaggle_dir):
    import shutil; shutil.rmtree(kaggle_dir/'masks')
    with pytest.raises(DataError, match=r'masks: masks folder does not exist'): read_pairs(kaggle_dir, layout='figshare')


def test_empty_folder(tmp_path):
    (tmp_path/'images').mkdir(); (tmp_path/'masks').mkdir()
    with pytest.raises(DataError, match=r'images: no image files'): read_pairs(tmp_path, layout='folders')
    with pytest.raises(DataError, match='no known layout'): read_pairs(tmp_path/'images')


def test_image_without_mask_and_reverse(kaggle_dir):
    (kaggle_dir/'masks'/'5.png').unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) have no mask .*: 5"): read_pairs(kaggle_dir)
    write_pair(kaggle_dir, '5'); (kaggle_dir/'images'/'7.png').unlink()
    with pytest.raises(DataError, match=r"1 mask\(s\) have no image .*: 7"): read_pairs(kaggle_dir)


def test_unreadable_and_truncated_files(kaggle_dir):
    (kaggle_dir/'images'/'2.png').write_bytes(b'not a png at all')
    whole = (kaggle_dir/'masks'/'4.png').read_bytes(); (kaggle_dir/'masks'/'4.png').write_bytes(whole[:len(whole)//2])
    (kaggle_dir/'images'/'6.png').write_bytes(b'')
    with pytest.raises(DataError) as e: verify_pairs(read_pairs(kaggle_dir, verbose=False))
    msg = str(e.value)
    assert '3 of 12 pairs are unusable' in msg
    assert 'images/2.png: cannot be read' in msg and 'masks/4.png: cannot be read' in msg and 'images/6.png: file is empty' in msg


def test_size_mismatch_named(kaggle_dir):
    write_pair(kaggle_dir, '9', size=32, mask_size=16)
    with pytest.raises(DataError, match=r'masks/9.png: mask is 16×16 but .*images/9.png is 32×32'):
        verify_pairs(read_pairs(kaggle_dir, verbose=False))


def test_size_mismatch_caught_by_loader_without_verify(kaggle_dir):
    "Even with the up-front check switched off, the item reader refuses a misaligned pair."
    write_pair(kaggle_dir, '2', size=32, mask_size=16)
    dls = seg_dataloaders(kaggle_dir, size=32, bs=12, valid_pct=0.25, verify=False, verbose=False, n_blocks=4)
    with pytest.raises(DataError, match='mask is 16×16'):
        for _ in dls.train: pass
        for _ in dls.valid: pass


def test_non_binary_and_rgb_masks(kaggle_dir):
    grey = np.zeros((32, 32), np.uint8); grey[4:8, 4:8] = 255; grey[10:12, 10:12] = 128
    write_pair(kaggle_dir, '3', mask=grey)
    with pytest.raises(DataError, match=r'masks/3.png: mask is not binary: values 0, 128, 255'):
        verify_pairs(read_pairs(kaggle_dir, verbose=False))
    write_pair(kaggle_dir, '3')
    rgb = np.zeros((32, 32, 3), np.uint8); rgb[4:8, 4:8] = (255, 0, 0)
    Image.fromarray(rgb).save(kaggle_dir/'masks'/'8.png')
    with pytest.raises(DataError, match=r'masks/8.png: mask has shape \(32, 32, 3\)'):
        verify_pairs(read_pairs(kaggle_dir, verbose=False))


def test_figshare_names_must_be_numbers(kaggle_dir):
    write_pair(kaggle_dir, 'scan_a')
    with pytest.raises(DataError, match='scan_a'): figshare_pairs(kaggle_dir)
    assert read_pairs(kaggle_dir, verbose=False).attrs['layout'] == 'folders'   # auto falls back to generic


def test_duplicate_stems_refused(kaggle_dir):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(kaggle_dir/'images'/'4.jpg')
    with pytest.raises(DataError, match=r"two files share the stem '4'"): read_pairs(kaggle_dir)


def test_generic_folders_with_suffix_and_16bit_tif(tmp_path):
    (tmp_path/'img').mkdir(); (tmp_path/'lbl').mkdir()
    for s in ('a', 'b'):
        tifffile.imwrite(tmp_path/'img'/f'{s}.tif', (np.arange(1024, dtype=np.uint16).reshape(32, 32) * 60))
        m = np.zeros((32, 32), np.uint8); m[:5, :5] = 1
        Image.fromarray(m).save(tmp_path/'lbl'/f'{s}_mask.png')
    df = verify_pairs(folder_pairs(tmp_path, images='img', masks='lbl', mask_suffix='_mask'))
    assert df.stem.tolist() == ['a', 'b'] and df.tumour_px.tolist() == [25, 25]


def test_lgg_layout_errors(tmp_path):
    case = tmp_path/'TCGA_XX_0001_20000101'; case.mkdir()
    img = np.zeros((16, 16, 3), np.uint8)
    tifffile.imwrite(case/f'{case.name}_1.tif', img); tifffile.imwrite(case/f'{case.name}_1_mask.tif', np.zeros((16, 16), np.uint8))
    tifffile.imwrite(case/f'{case.name}_2.tif', img)
    with pytest.raises(DataError, match=r'1 slice\(s\) have no _mask.tif: TCGA_XX_0001_20000101_2'): lgg_pairs(tmp_path)
    tifffile.imwrite(case/f'{case.name}_2_mask.tif', np.zeros((16, 16), np.uint8))
    assert len(lgg_pairs(tmp_path)) == 2
    tifffile.imwrite(case/'other_3.tif', img)
    with pytest.raises(DataError, match=r'other_3.tif: name does not follow'): lgg_pairs(tmp_path)
