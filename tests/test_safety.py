"""Safety as an attacker and a clumsy user would test it: no code runs from a file, nothing a user owns is deleted
or overwritten, an untrusted model card cannot exhaust the machine, and faults give one line that names the file."""
import errno, json, os, pickle, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import yaml

from bts_nb.phantoms import make_synthetic
from bts_nb.train import TrainConfig, train

from conftest import cli


def tiny(data, **kw):
    return TrainConfig(**{**dict(data=str(data), arch='smp_unet', arch_kw={}, pretrained=False, size=64, bs=8, epochs=1, valid_pct=0.25), **kw})


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    "A dataset and a finished one-epoch run on it (copy before changing it)."
    base = tmp_path_factory.mktemp('safety')
    data = make_synthetic(base/'syn', n_patients=6, n_slices=6, size=64)
    train(tiny(data), base/'run', verbose=False)
    return data, base/'run'


def copy_run(run, dest):
    dest.mkdir(parents=True)
    for p in run.iterdir(): (dest/p.name).write_bytes(p.read_bytes())
    return dest


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob('*')) if p.is_file()}


class RunsCommand:
    "Unpickling this runs a shell command that creates `marker`."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def interrupted_copy(run, dest):
    "A copy of `run` made to look interrupted after epoch 1 of 2 (config says 2 epochs, no card)."
    r = copy_run(run, dest)
    cfg = yaml.safe_load((r/'config.yaml').read_text()); cfg['epochs'] = 2
    (r/'config.yaml').write_text(yaml.safe_dump(cfg))
    (r/'model_card.json').unlink()
    return r


def test_crafted_checkpoint_runs_no_code(finished, tmp_path):
    data, run = finished
    marker = tmp_path/'pwned'
    # 1. a checkpoint that is only the payload; 2. the payload hidden under an extra key of a working-looking checkpoint
    from safetensors.torch import load_file
    model_state = load_file(str(run/'model.safetensors'))
    payloads = {'bare': RunsCommand(marker),
                'hidden': {'state': {'model': model_state, 'opt': {'state': [], 'hypers': []}}, 'epochs_done': 1, 'x': RunsCommand(marker)}}
    for name, payload in payloads.items():
        r = interrupted_copy(run, tmp_path/name)
        with open(r/'checkpoint.pth', 'wb') as f: pickle.dump(payload, f)        # torch.load reads plain pickles too
        res = cli('bts_train', '--out', r, '--resume')
        assert not marker.exists(), f"{name}: the command in checkpoint.pth ran"
        assert res.returncode == 2, res.stderr[-2000:]
        assert f"{r/'checkpoint.pth'}: refused" in res.stderr and 'Traceback' not in res.stderr
    r = interrupted_copy(run, tmp_path/'garbage')
    (r/'checkpoint.safetensors').write_bytes(os.urandom(256))
    res = cli('bts_train', '--out', r, '--resume')
    assert res.returncode == 2 and f"{r/'checkpoint.safetensors'}: not a readable checkpoint" in res.stderr, res.stderr[-2000:]


def test_overwrite_checks_everything_first_and_deletes_only_run_files(finished, tmp_path):
    data, run = finished
    r = copy_run(run, tmp_path/'run')
    before = snapshot(r)
    for bad in (['--size', 33], ['--arch', 'nope'], ['--data', tmp_path/'missing']):
        res = cli('bts_train', '--data', data, '--out', r, '--overwrite', *bad)
        assert res.returncode == 2, res.stderr[-2000:]
        assert snapshot(r) == before, f"{bad}: the finished run was touched before the options were checked"
    thesis = tmp_path/'thesis'; thesis.mkdir()
    (thesis/'thesis.tex').write_text('years of work'); (thesis/'config.yaml').write_text('title: my thesis\n')
    mine = snapshot(thesis)
    res = cli('bts_train', '--data', data, '--out', thesis, '--overwrite', '--size', 64, '--epochs', 1)
    assert res.returncode == 2 and 'does not hold a bts_train run' in res.stderr
    res = cli('bts_train', '--data', data, '--out', '.', '--overwrite', '--arch', 'nope', cwd=thesis)
    assert res.returncode == 2
    assert snapshot(thesis) == mine
    res = cli('bts_train', '--data', data, '--out', data/'run', '--size', 64, '--epochs', 1)
    assert res.returncode == 2 and 'must not be, contain or lie inside the dataset folder' in res.stderr
    assert not (data/'run').exists()
    (r/'notes.md').write_text('my notes on this run')
    res = cli('bts_train', '--data', data, '--out', r, '--overwrite', '--size', 64, '--bs', 8, '--epochs', 1, '--valid_pct', 0.25)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (r/'notes.md').read_text() == 'my notes on this run' and 'kept what bts_train did not write' in res.stdout


def test_rerun_after_a_kill_says_what_is_there(finished, tmp_path):
    data, run = finished
    r = tmp_path/'run'; r.mkdir()
    for f in ('config.yaml', 'split.csv'): (r/f).write_bytes((run/f).read_bytes())   # killed before epoch 1 ended
    res = cli('bts_train', '--data', data, '--out', r)
    assert res.returncode == 2 and 'stopped before its first epoch ended: nothing to resume' in res.stderr and '--overwrite' in res.stderr
    res = cli('bts_train', '--out', r, '--resume')
    assert res.returncode == 2 and 'nothing to resume (no checkpoint in it)' in res.stderr


def test_disk_full_stops_with_a_message_and_keeps_saved_epochs(finished, tmp_path, monkeypatch):
    import safetensors.torch as st                    # bts_nb.serialize writes through it, looked up at each save
    from bts_nb.serialize import SaveError, checkpoint_info
    data, _ = finished
    real, calls = st.save_file, []
    def full_after_epoch_1(*a, **k):
        calls.append(1)
        if len(calls) > 2: raise OSError(errno.ENOSPC, 'No space left on device')   # epoch 1: best weights + checkpoint
        return real(*a, **k)
    monkeypatch.setattr(st, 'save_file', full_after_epoch_1)
    out = tmp_path/'run'
    with pytest.raises(SaveError) as e: train(tiny(data, epochs=3), out, verbose=False)
    assert 'could not be written: the disk is full' in e.value.msg and 'epochs 1–1 of 3 are saved' in e.value.msg
    assert str(out) in e.value.msg and not list(out.glob('.*.tmp'))
    assert checkpoint_info(out/'checkpoint.safetensors')['epochs_done'] == 1
    monkeypatch.setattr(st, 'save_file', real)
    train(tiny(data, epochs=3), out, resume=True, verbose=False)
    assert len(pd.read_csv(out/'metrics.csv')) == 3 and (out/'model_card.json').exists()


def test_predict_keeps_finished_rows_when_a_write_fails(finished, tmp_path, monkeypatch):
    import bts_nb.inference as inf
    from bts_nb.serialize import SaveError
    data, run = finished
    seg = inf.Segmenter(run, device='cpu')
    files = [str(data/'images'/f'{n}.png') for n in range(1, 7)]
    real = inf.atomic_write
    def full_at_image_5(path, write):
        if Path(path).name == '5_mask.png': raise SaveError(path, OSError(errno.ENOSPC, 'No space left on device'))
        return real(path, write)
    monkeypatch.setattr(inf, 'atomic_write', full_at_image_5)
    with pytest.raises(SaveError, match='5_mask.png: could not be written: the disk is full'):
        inf.predict_files(seg, files, tmp_path/'pred', bs=2, verbose=False)
    done = pd.read_csv(tmp_path/'pred'/'predictions.csv')
    assert done.file.tolist() == files[:4] and (done.status == 'ok').all()


def test_predict_never_writes_into_its_input(finished, tmp_path):
    data, run = finished
    ds = tmp_path/'ds'; ds.mkdir()
    for sub in ('images', 'masks'):
        (ds/sub).mkdir()
        for n in (1, 2, 3): (ds/sub/f'{n}.png').write_bytes((data/sub/f'{n}.png').read_bytes())
    before = snapshot(ds)
    for out in (ds/'images', ds, ds/'pred'):
        res = cli('bts_predict', '--model', run, '--input', ds, '--out', out, '--overwrite')
        assert res.returncode == 2 and 'is inside the input folder' in res.stderr, (out, res.stderr[-1000:])
    assert snapshot(ds) == before
    flat = tmp_path/'flat'; flat.mkdir()                                # a.png and its mask side by side
    (flat/'a.png').write_bytes((data/'images'/'1.png').read_bytes()); (flat/'a_mask.png').write_bytes((data/'masks'/'1.png').read_bytes())
    res = cli('bts_predict', '--model', run, '--input', flat, '--out', flat, '--overwrite')
    assert res.returncode == 2 and (flat/'a_mask.png').read_bytes() == (data/'masks'/'1.png').read_bytes()
    import bts_nb.inference as inf
    with pytest.raises(FileExistsError, match='is an input, and an output would overwrite it'):
        inf.predict_files(inf.Segmenter(run, device='cpu'), [str(flat/'a.png')], flat, truths={str(flat/'a.png'): str(flat/'a_mask.png')},
                          overwrite=True, verbose=False)
    assert cli('bts_predict', '--model', run, '--input', flat/'a.png', '--out', tmp_path/'o').returncode == 0
    res = cli('bts_predict', '--model', run, '--input', flat/'a.png', '--out', tmp_path/'o')
    assert res.returncode == 2 and 'pass --overwrite' in res.stderr


def bad_model(run, dest, card_change=None, weights=None):
    dest.mkdir()
    card = json.loads((run/'model_card.json').read_text())
    if card_change: card.update(card_change)
    (dest/'model_card.json').write_text(json.dumps(card))
    (dest/'model.safetensors').write_bytes((run/'model.safetensors').read_bytes() if weights is None else weights)
    return dest


@pytest.mark.parametrize('change, message', [
    (dict(size=100000), "'size' is 100000; it must be an integer multiple of 32 from 32 to 1024"),
    (dict(n_in='1'), "'n_in' is '1'; it must be an integer"),
    (dict(threshold=7), "'threshold' is 7"),
    (dict(arch_kw={'decoder_chanels': [16, 8, 8, 8, 8]}), "smp_unet has no option 'decoder_chanels'"),
    (dict(arch_kw={'decoder_channels': [10**6] * 5}), "options take booleans"),
    (dict(arch='__import__("os")'), "'arch' is"),
])
def test_untrusted_model_card_is_checked_first(finished, tmp_path, change, message):
    data, run = finished
    m = bad_model(run, tmp_path/'m', change)
    res = cli('bts_predict', '--model', m, '--input', data/'images'/'1.png', '--out', tmp_path/'o')
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"{m/'model_card.json'}: " in res.stderr and message in res.stderr and 'Traceback' not in res.stderr


@pytest.mark.parametrize('kind', ['empty', 'truncated', 'random'])
def test_broken_weights_file_is_named(finished, tmp_path, kind):
    data, run = finished
    good = (run/'model.safetensors').read_bytes()
    weights = {'empty': b'', 'truncated': good[:len(good) // 2], 'random': os.urandom(4096)}[kind]
    m = bad_model(run, tmp_path/'m', weights=weights)
    res = cli('bts_predict', '--model', m, '--input', data/'images'/'1.png', '--out', tmp_path/'o')
    assert res.returncode == 2 and f"{m/'model.safetensors'}: not a readable safetensors file" in res.stderr, res.stderr[-2000:]
    assert 'Traceback' not in res.stderr


def test_tilde_is_expanded(finished, tmp_path):
    data, run = finished
    home = tmp_path/'home'; home.mkdir()
    copy_run(run, home/'model')
    (home/'images').mkdir(); (home/'images'/'1.png').write_bytes((data/'images'/'1.png').read_bytes())
    res = cli('bts_predict', '--model', '~/model', '--input', '~/images', '--out', '~/pred', env={'HOME': str(home)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert (home/'pred'/'1_mask.png').exists() and not (tmp_path/'~').exists()
    (home/'cfg.yaml').write_text(yaml.safe_dump(dict(data=str(data), size=64, epochs=1, valid_pct=0.25)))
    res = cli('bts_train', '--config', '~/cfg.yaml', '--out', '~/run', env={'HOME': str(home)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (home/'run'/'model_card.json').exists()


def test_app_result_folders_are_bounded_and_removed_at_exit(finished, tmp_path):
    data, run = finished
    code = (f"from bts_nb.app import SliceApp\napp = SliceApp({str(run)!r}, keep_results=2)\n"
            f"for _ in range(4): app.run({str(data/'images'/'1.png')!r}, tta=False)\n"
            "print(app.out_dir, len(list(app.out_dir.glob('req_*'))))")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out_dir, n = res.stdout.split()[-2:]
    assert n == '2' and not Path(out_dir).exists()
