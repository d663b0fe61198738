"""The leak auditor as users meet it: `bts_leakcheck` on saved splits and on the split bts_train would make, and
`bts_train --split` refusing a leaking split unless told. Phantoms always; the shared Figshare data when present."""
import json
from pathlib import Path
import numpy as np, pandas as pd
import pytest

from bts_nb.phantoms import make_synthetic
from bts_nb.readers import read_pairs
from bts_nb.splits import split_pairs, save_split
from conftest import FIGSHARE, needs_figshare, cli


def random_split(df, valid=0.25, seed=0, keep_test=False):
    "Slices dealt to the sides at random, as most published splits of these data sets were (test rows kept if asked)."
    side = np.where(np.random.default_rng(seed).random(len(df)) < valid, 'valid', 'train')
    return df.assign(split=np.where(df.split == 'test', 'test', side) if keep_test else side)


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory):
    "16 phantom patients of 8 slices, a block split and a random split of them, saved as bts_train saves splits."
    base = tmp_path_factory.mktemp('leaks')
    data = make_synthetic(base/'syn', n_patients=16, n_slices=8, size=64)
    pairs = read_pairs(data, verbose=False)
    save_split(split_pairs(pairs, valid_pct=0.25, n_blocks=8, snap=4), base/'block.csv')
    save_split(random_split(pairs), base/'random.csv')
    return data, base


def test_leakcheck_flags_a_random_split_and_passes_a_block_split(phantoms, tmp_path):
    data, base = phantoms
    res = cli('bts_leakcheck', '--split', base/'random.csv', '--out', tmp_path/'r')
    assert res.returncode == 1 and 'the split LEAKS' in res.stdout, res.stdout + res.stderr
    summary = json.loads((tmp_path/'r'/'leak_summary.json').read_text())
    assert summary['leaky'] and summary['sides']['valid']['share'] > 0.3
    leaks = pd.read_csv(tmp_path/'r'/'leaks.csv')
    assert leaks.leak.sum() == summary['sides']['valid']['leaks'] and (leaks.side == 'valid').all()
    truth = pd.read_csv(data/'patients.csv').set_index('number')['patient']           # the phantoms know their patients
    flagged = leaks[leaks.leak]
    same = [truth[int(Path(a).stem)] == truth[int(Path(b).stem)] for a, b in zip(flagged.image, flagged.train_image)]
    assert np.mean(same) >= 0.9, flagged
    assert {'leak_calibration.png', 'closest_pairs.png'} <= {p.name for p in (tmp_path/'r').iterdir()}
    res = cli('bts_leakcheck', '--split', base/'block.csv')
    assert res.returncode == 0 and 'no leak beyond the false rate' in res.stdout, res.stdout + res.stderr
    # the split bts_train would make: on so small a set its 20 blocks are shorter than a patient (see nbs/00d_leaks),
    # so whatever it flags must be pairs of one patient
    res = cli('bts_leakcheck', '--data', data, '--valid_pct', 0.25, '--out', tmp_path/'d')
    assert res.returncode in (0, 1) and (tmp_path/'d'/'leaks.csv').exists(), res.stdout + res.stderr
    flagged = pd.read_csv(tmp_path/'d'/'leaks.csv').query('leak')
    assert all(truth[int(Path(a).stem)] == truth[int(Path(b).stem)] for a, b in zip(flagged.image, flagged.train_image)), flagged


def test_leakcheck_bad_input_names_the_problem(tmp_path):
    res = cli('bts_leakcheck')
    assert res.returncode == 2 and 'give --split' in res.stderr
    res = cli('bts_leakcheck', '--split', tmp_path/'nope.csv')
    assert res.returncode == 2 and 'nope.csv: split file does not exist' in res.stderr


def test_train_refuses_a_leaking_split_unless_told(phantoms, tmp_path):
    data, base = phantoms
    opts = ['--data', data, '--split', base/'random.csv', '--arch', 'smp_unet', '--encoder', 'resnet18', '--size', 64, '--epochs', 1]
    res = cli('bts_train', '--out', tmp_path/'run', *opts)
    assert res.returncode == 2 and 'this split leaks' in res.stderr and '--allow_leaky_split' in res.stderr, res.stderr[-2000:]
    assert not (tmp_path/'run').exists()                                               # refused before anything was written
    res = cli('bts_train', '--out', tmp_path/'run', *opts, '--allow_leaky_split')
    assert res.returncode == 0, res.stderr[-2000:]
    card = json.loads((tmp_path/'run'/'model_card.json').read_text())
    assert card['allow_leaky_split'] is True and card['split_leak_check']['leaky'] is True
    res = cli('bts_train', '--out', tmp_path/'ok', *opts[:2], '--split', base/'block.csv', *opts[4:])
    assert res.returncode == 0, res.stderr[-2000:]
    card = json.loads((tmp_path/'ok'/'model_card.json').read_text())
    assert card['split_leak_check']['leaky'] is False and card['allow_leaky_split'] is False


@needs_figshare
def test_figshare_random_validation_leaks_and_the_default_block_split_does_not(tmp_path):
    res = cli('bts_leakcheck', '--data', FIGSHARE, '--valid_pct', 0.15, '--test_pct', 0.15, '--out', tmp_path/'block')
    assert res.returncode == 0, res.stdout + res.stderr
    block = json.loads((tmp_path/'block'/'leak_summary.json').read_text())
    assert all(v['share'] <= 0.01 for v in block['sides'].values()), block
    split = pd.read_csv(tmp_path/'block'/'leaks.csv')                                 # held-out images of the block split
    pairs = split_pairs(read_pairs(FIGSHARE, verbose=False), valid_pct=0.15, test_pct=0.15)
    save_split(random_split(pairs, valid=0.15 / 0.85, keep_test=True), tmp_path/'random.csv')
    res = cli('bts_leakcheck', '--split', tmp_path/'random.csv', '--out', tmp_path/'random')
    assert res.returncode == 1, res.stdout + res.stderr
    rnd = json.loads((tmp_path/'random'/'leak_summary.json').read_text())
    assert rnd['sides']['valid']['share'] > 0.25 and rnd['sides']['test']['share'] <= 0.01, rnd
    assert len(split) == (pairs.split != 'train').sum()
