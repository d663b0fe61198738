"""bts_predict: any size and format in, masks at the input's size out; bad files listed, the rest processed;
Dice matching the training evaluation; model cards that do not fit their weights refused."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from bts_nb.inference import postprocess

BTS_PREDICT = str(Path(sys.executable).parent/'bts_predict')


@pytest.fixture(scope='module')
def trained(learned):
    "The session's small model that learned (conftest): 128 phantom slices at 64 px."
    return learned


def predict_cli(*args):
    return subprocess.run([BTS_PREDICT, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_dice_matches_training_evaluation(trained, tmp_path):
    data, exp = trained
    r = predict_cli('--model', exp, '--input', data, '--out', tmp_path/'pred', '--backend', 'torch')     # training evaluates through PyTorch
    assert r.returncode == 0, r.stderr[-2000:]
    pred = pd.read_csv(tmp_path/'pred'/'predictions.csv')
    assert len(pred) == 128 and (pred.status == 'ok').all() and pred.has_truth.all()
    ev = pd.read_csv(exp/'per_image_valid.csv')
    both = ev.merge(pred, left_on='image', right_on='file', suffixes=('_train', '_predict'))
    assert len(both) == len(ev) > 0
    assert (both.dice_train > 0.5).sum() >= len(both) // 2          # tumours were found: the comparison is not of empty masks
    assert np.abs(both.dice_train - both.dice_predict).max() < 1e-3
    assert np.abs(both.hd95_train - both.hd95_predict).max() < 1e-3
    assert 'mean Dice' in r.stdout


def test_any_size_and_format(trained, tmp_path):
    data, exp = trained
    src = np.asarray(Image.open(data/'images'/'10.png'))
    inp = tmp_path/'in'; inp.mkdir()
    Image.fromarray(np.asarray(Image.fromarray(src).resize((512, 512)))).save(inp/'big.png')
    Image.fromarray((src.astype(np.uint16) * 257)).save(inp/'sixteen.png')
    Image.fromarray(np.stack([src] * 3, -1)).save(inp/'colour.jpg', quality=95)
    tifffile.imwrite(inp/'scan.tif', np.stack([src] * 3, -1))
    Image.fromarray(src[:50, :40]).save(inp/'odd.png')
    r = predict_cli('--model', exp, '--input', inp, '--out', tmp_path/'out', '--tta', 'flip')
    assert r.returncode == 0, r.stderr[-2000:]
    for stem, shape in (('big', (512, 512)), ('sixteen', (64, 64)), ('colour', (64, 64)), ('scan', (64, 64)), ('odd', (50, 40))):
        assert np.asarray(Image.open(tmp_path/'out'/f'{stem}_mask.png')).shape == shape
        assert set(np.unique(np.asarray(Image.open(tmp_path/'out'/f'{stem}_mask.png')))) <= {0, 255}
        assert np.asarray(Image.open(tmp_path/'out'/f'{stem}_overlay.png')).shape == (*shape, 3)
        assert (tmp_path/'out'/f'{stem}_uncertainty.png').exists()
    one = predict_cli('--model', exp, '--input', inp/'big.png', '--out', tmp_path/'one')
    assert one.returncode == 0 and (tmp_path/'one'/'big_mask.png').exists()


def test_bad_files_listed_rest_processed(trained, tmp_path):
    data, exp = trained
    inp = tmp_path/'in'; inp.mkdir()
    for n in (1, 2): (inp/f'{n}.png').write_bytes((data/'images'/f'{n}.png').read_bytes())
    (inp/'text.png').write_text('hello')
    (inp/'empty.png').write_bytes(b'')
    tifffile.imwrite(inp/'volume.tif', np.zeros((5, 64, 64), np.uint8))
    rgba = np.zeros((64, 64, 4), np.uint8); rgba[..., 3] = np.arange(64, dtype=np.uint8)[None]
    Image.fromarray(rgba).save(inp/'alpha.png')
    r = predict_cli('--model', exp, '--input', inp, '--out', tmp_path/'out')
    assert r.returncode == 1
    t = pd.read_csv(tmp_path/'out'/'predictions.csv').set_index(pd.read_csv(tmp_path/'out'/'predictions.csv').file.map(lambda f: Path(f).name))
    assert t.loc['1.png', 'status'] == 'ok' and t.loc['2.png', 'status'] == 'ok'
    assert 'cannot be read' in t.loc['text.png', 'error'] and 'empty' in t.loc['empty.png', 'error']
    assert 'volume' in t.loc['volume.tif', 'error'] and 'transparency' in t.loc['alpha.png', 'error']
    assert not list((tmp_path/'out').glob('*.tmp')) and not list((tmp_path/'out').glob('.*'))
    assert sorted(p.name for p in (tmp_path/'out').glob('*_mask.png')) == ['1_mask.png', '2_mask.png']


def test_mask_of_other_size_is_an_error_row(trained, tmp_path):
    data, exp = trained
    root = tmp_path/'ds'; (root/'images').mkdir(parents=True); (root/'masks').mkdir()
    for n in (1, 2):
        (root/'images'/f'{n}.png').write_bytes((data/'images'/f'{n}.png').read_bytes())
        (root/'masks'/f'{n}.png').write_bytes((data/'masks'/f'{n}.png').read_bytes())
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root/'masks'/'2.png')
    r = predict_cli('--model', exp, '--input', root/'images', '--out', tmp_path/'out')
    assert r.returncode == 1
    t = pd.read_csv(tmp_path/'out'/'predictions.csv')
    assert t.status.tolist() == ['ok', 'error'] and 'mask is 32×32' in t.error.iloc[1]


def test_refuses_to_overwrite_and_bad_models(trained, tmp_path):
    data, exp = trained
    assert predict_cli('--model', exp, '--input', data/'images'/'1.png', '--out', tmp_path/'o').returncode == 0
    r = predict_cli('--model', exp, '--input', data/'images'/'1.png', '--out', tmp_path/'o')
    assert r.returncode == 2 and 'already holds' in r.stderr and 'pass --overwrite' in r.stderr
    bad = tmp_path/'badexp'; bad.mkdir()
    (bad/'model.safetensors').write_bytes((exp/'model.safetensors').read_bytes())
    card = json.loads((exp/'model_card.json').read_text()); card['arch'] = 'unet'
    (bad/'model_card.json').write_text(json.dumps(card))
    r = predict_cli('--model', bad, '--input', data/'images'/'1.png', '--out', tmp_path/'o2')
    assert r.returncode == 2 and 'model_card.json describes a unet that does not match the weights' in r.stderr
    r = predict_cli('--model', tmp_path/'nothing', '--input', data/'images', '--out', tmp_path/'o3')
    assert r.returncode == 2 and 'no model card' in r.stderr


def test_postprocess():
    m = np.zeros((20, 20), bool); m[2:10, 2:10] = True; m[15, 15] = True; m[17:19, 17:19] = True
    assert postprocess(m, min_size=2).sum() == 64 + 4
    assert postprocess(m, keep_largest=True).sum() == 64
    assert postprocess(np.zeros((4, 4)), keep_largest=True).sum() == 0


def test_torchscript_export_gives_the_same_masks(trained, tmp_path):
    import torch, torch.nn.functional as F
    from bts_nb.inference import export_torchscript, preprocess, read_input
    data, exp = trained
    ts = torch.jit.load(str(export_torchscript(exp, tmp_path/'m.pt')))
    files = [data/'images'/f'{n}.png' for n in range(1, 33)]
    assert predict_cli('--model', exp, '--input', data/'images', '--out', tmp_path/'pred', '--backend', 'torch').returncode == 0
    marked = 0
    for f in files:
        img = read_input(f)
        with torch.no_grad(): prob = torch.sigmoid(ts(torch.from_numpy(preprocess(img, 64))))
        prob = F.interpolate(prob, size=img.shape, mode='bilinear', align_corners=False)[0, 0].numpy()
        expected = np.asarray(Image.open(tmp_path/'pred'/f'{f.stem}_mask.png')) > 0
        assert np.array_equal(prob > 0.5, expected), f
        marked += expected.any()
    assert marked >= 8                                                  # masks with tumour in them, not only empty ones


def test_bts_evaluate_dataset_and_saved_split(trained, tmp_path):
    data, exp = trained
    cli = str(Path(sys.executable).parent/'bts_evaluate')
    r = subprocess.run([cli, '--model', exp, '--data', data, '--out', tmp_path/'ev'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path/'ev'/'summary.json').read_text())
    assert info['summary']['n_images'] == 128 and len(pd.read_csv(tmp_path/'ev'/'per_image.csv')) == 128
    sweep = pd.DataFrame(info['area_sweep'])
    assert list(sweep.min_area_px) == [0, 10, 25, 50, 100, 200]
    fp = sweep.fp_slice_rate.dropna()
    assert (fp.diff().dropna() <= 1e-12).all()                     # a larger minimum area never adds false positives
    r = subprocess.run([cli, '--model', exp, '--split', exp/'split.csv', '--side', 'valid', '--out', tmp_path/'ev2', '--backend', 'torch'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    valid = pd.read_csv(exp/'per_image_valid.csv')
    got = json.loads((tmp_path/'ev2'/'summary.json').read_text())['summary']
    assert got['n_images'] == len(valid) and abs(got['dice_mean'] - valid.dice.mean()) < 1e-6
    r = subprocess.run([cli, '--model', exp, '--data', data, '--split', exp/'split.csv', '--out', tmp_path/'ev3'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'one of --data or --split' in r.stderr


def test_bts_evaluate_scores_the_masks_bts_predict_gives_with_the_same_options(trained, tmp_path):
    data, exp = trained
    cli = str(Path(sys.executable).parent/'bts_evaluate')
    opts = ['--tta', 'full', '--keep_largest']
    r = subprocess.run([cli, '--model', exp, '--data', data, '--out', tmp_path/'ev', *opts], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path/'ev'/'summary.json').read_text())
    assert (info['tta'], info['keep_largest']) == ('full', True)
    r = predict_cli('--model', exp, '--input', data, '--out', tmp_path/'pred', '--save', 'none', *opts)
    assert r.returncode == 0, r.stderr[-2000:]
    both = pd.read_csv(tmp_path/'ev'/'per_image.csv').merge(pd.read_csv(tmp_path/'pred'/'predictions.csv'), left_on='image', right_on='file')
    assert len(both) == 128 and np.abs(both.dice_x - both.dice_y).max() < 1e-3
    plain = pd.read_csv(exp/'per_image_valid.csv').merge(both, on='image')
    assert (np.abs(plain.dice - plain.dice_x) > 1e-6).any()         # the options changed some masks: they were applied
    r = subprocess.run([cli, '--model', exp, '--data', data, '--out', tmp_path/'ev2', '--tta', 'rot90'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "tta 'rot90': choose none, flip, full" in r.stderr


def test_bts_figures_writes_its_panels(trained, tmp_path):
    data, exp = trained
    assert predict_cli('--model', exp, '--input', data, '--out', tmp_path/'pred').returncode == 0
    figs = str(Path(sys.executable).parent/'bts_figures')
    r = subprocess.run([figs, '--model', str(exp), '--pred', str(tmp_path/'pred'), '--out', str(tmp_path/'imgs'), '--side', 'valid', '--k', '2'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ('worst_cases.png', 'best_cases.png', 'dice_histogram.png', 'training_curves.png'):
        im = Image.open(tmp_path/'imgs'/name)
        assert min(im.size) > 100 and np.asarray(im.convert('L')).std() > 5, name      # a real picture, not a blank canvas
    # the README's way: bts_predict given a relative --input, so predictions.csv holds relative paths and split.csv absolute ones
    pr = subprocess.run([str(Path(sys.executable).parent/'bts_predict'), '--model', str(exp), '--input', os.path.relpath(data, tmp_path),
                         '--out', 'pred_rel'], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert pr.returncode == 0, pr.stderr[-2000:]
    assert not pd.read_csv(tmp_path/'pred_rel'/'predictions.csv').file.iloc[0].startswith('/')
    r = subprocess.run([figs, '--model', str(exp), '--pred', 'pred_rel', '--out', 'imgs_rel', '--side', 'valid'], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([figs, '--model', str(exp), '--pred', str(tmp_path/'pred'), '--out', str(tmp_path/'imgs2'), '--side', 'test'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "has no 'test' images" in r.stderr
