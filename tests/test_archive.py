"""bts_predict over an archive: slices streamed through worker processes; a run killed half-way resumes and ends with every
slice predicted exactly once; shards cover the archive exactly once and merge; a resume with another model or other settings is refused."""
import os, re, signal, subprocess, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import BIN, cli

N = 500


def write_archive(root, n, size=64):
    "`n` numbered slices, each a noisy square with a bright blob somewhere."
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for k in range(n):
        img = rng.integers(0, 120, (size, size), dtype=np.uint8)
        r, c = rng.integers(8, size - 24, 2)
        img[r:r+16, c:c+16] = 230
        Image.fromarray(img).save(root/f'{k}.png')
    return root


@pytest.fixture(scope='module')
def archive(tmp_path_factory): return write_archive(tmp_path_factory.mktemp('archive')/'slices', N)


def logged(csv) -> int:
    "Complete rows in a prediction CSV (its header and a torn last line not counted)."
    if not csv.exists(): return 0
    return max(0, csv.read_bytes().count(b'\n') - 1)


def names(table): return table.file.map(lambda f: Path(f).name)


def test_killed_run_resumes_with_each_slice_predicted_once(learned, archive, tmp_path):
    _, model = learned
    out, csv = tmp_path/'pred', tmp_path/'pred'/'predictions.csv'
    args = ['--model', model, '--input', archive, '--out', out, '--save', 'mask', '--workers', '2', '--bs', '4']
    run = subprocess.Popen([str(BIN/'bts_predict'), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while logged(csv) < 100:
        assert run.poll() is None, f"bts_predict ended before it could be killed: {run.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "no 100 rows in 300 s"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)                    # the whole group: the main process and its loader workers
    run.wait()
    before = pd.read_csv(csv)
    assert 100 <= len(before) < N and names(before).is_unique
    res = cli('bts_predict', *args, '--resume')
    assert res.returncode == 0, res.stderr[-2000:]
    assert re.search(rf'resuming predictions\.csv: {len(before)} of {N} slices done earlier by this model, {N - len(before)} to go', res.stdout), res.stdout
    assert re.search(r'slice/s', res.stderr), res.stderr[-500:]                 # the progress bar gives the rate
    after = pd.read_csv(csv)
    assert names(after).is_unique and set(names(after)) == {f'{k}.png' for k in range(N)}    # exactly once each
    assert after.file.tolist()[:len(before)] == before.file.tolist()                        # the rows before the kill kept
    assert (after.status == 'ok').all() and after.model_sha256.nunique() == 1
    assert sorted(p.name for p in out.glob('*_mask.png')) == sorted(f'{k}_mask.png' for k in range(N))
    assert not list(out.glob('*_overlay.png')) and not list(out.glob('.*.tmp'))

    again = cli('bts_predict', *args)                                           # neither --resume nor --overwrite: refused
    assert again.returncode == 2 and '--resume' in again.stderr and '--overwrite' in again.stderr
    other = cli('bts_predict', *args, '--resume', '--threshold', '0.3')
    assert other.returncode == 2 and 'threshold' in other.stderr and 'then' in other.stderr, other.stderr[-1000:]


def test_another_model_cannot_resume_the_run(learned, archive, tmp_path):
    from safetensors.torch import load_file, save_file
    _, model = learned
    other = tmp_path/'other'; other.mkdir()
    (other/'model_card.json').write_bytes((model/'model_card.json').read_bytes())
    weights = load_file(model/'model.safetensors')
    save_file({k: (v + 0.01 if v.is_floating_point() else v) for k, v in weights.items()}, other/'model.safetensors')
    few = tmp_path/'few'; few.mkdir()
    for k in range(3): (few/f'{k}.png').write_bytes((archive/f'{k}.png').read_bytes())
    assert cli('bts_predict', '--model', model, '--input', few, '--out', tmp_path/'p').returncode == 0
    res = cli('bts_predict', '--model', other, '--input', few, '--out', tmp_path/'p', '--resume')
    assert res.returncode == 2 and 'model_sha256' in res.stderr, res.stderr[-1000:]


def test_shards_cover_the_archive_exactly_once_and_merge(learned, archive, tmp_path):
    _, model = learned
    out = tmp_path/'sharded'
    for i in range(3):
        res = cli('bts_predict', '--model', model, '--input', archive, '--out', out, '--save', 'none', '--shard', f'{i}/3', '--workers', '0')
        assert res.returncode == 0 and 'bts_predict_merge' in res.stdout, res.stderr[-2000:]
    parts = [set(names(pd.read_csv(out/f'predictions.shard-{i}-of-3.csv'))) for i in range(3)]
    assert sum(map(len, parts)) == N and len(set.union(*parts)) == N            # no overlap, no gap
    assert all(N / 3 * 0.8 < len(p) < N / 3 * 1.2 for p in parts)               # and balanced
    assert not list(out.glob('*.png'))                                          # --save none: the table only
    res = cli('bts_predict_merge', '--input', archive, '--out', out)
    assert res.returncode == 0, res.stderr
    merged = pd.read_csv(out/'predictions.csv')
    assert names(merged).tolist() == [f'{k}.png' for k in range(N)]
    # a shard that lost a row: the merge names the gap and writes nothing
    (out/'predictions.csv').unlink()
    shard = out/'predictions.shard-1-of-3.csv'
    shard.write_text(''.join(shard.read_text().splitlines(keepends=True)[:-1]))
    res = cli('bts_predict_merge', '--input', archive, '--out', out)
    assert res.returncode == 2 and '1 slices are in no shard log' in res.stderr, res.stderr
    assert not (out/'predictions.csv').exists()
    res = cli('bts_predict', '--model', model, '--input', archive, '--out', out, '--shard', '3/3')
    assert res.returncode == 2 and '0 <= i < n' in res.stderr
