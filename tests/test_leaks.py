"""The leak auditor as users meet it: `bts_leakcheck` on saved splits and on the split bts_train would make, and
`bts_train --split` refusing a leaking split unless told. Phantoms always; the shared Figshare data when present."""
import json, os
from pathlib import Path
import numpy as np, pandas as pd
import pytest

from bts_nb.phantoms import make_synthetic
from bts_nb.readers import read_pairs
from bts_nb.splits import split_pairs, save_split, fold_groups
from conftest import FIGSHARE, LGG, needs_figshare, needs_lgg, cli


def random_split(df, valid=0.25, seed=0, keep_test=False):
    "Slices dealt to the sides at random, as most published splits of these data sets were (test rows kept if asked)."
    side = np.where(np.random.default_rng(seed).random(len(df)) < valid, 'valid', 'train')
    return df.assign(split=np.where(df.split == 'test', 'test', side) if keep_test else side)


def users_table(df, path, shuffle_seed=0):
    "`df` as a user's script writes it: image/mask/split (or fold) only, rows shuffled, paths relative to the table, other column names."
    path.parent.mkdir(parents=True, exist_ok=True)
    rel = lambda ps: [os.path.relpath(p, path.parent) for p in ps]
    df = df.sample(frac=1, random_state=shuffle_seed)
    out = pd.DataFrame({'image_path': rel(df.image), 'label': rel(df['mask'])})
    if 'split' in df: out['subset'] = df.split.replace({'valid': 'val'}).to_numpy()
    if 'fold' in df: out['fold'] = df.fold.to_numpy()
    out.assign(origin='script').to_csv(path, index=False)
    return path


def flagged(folder):
    "The held-out images that a bts_leakcheck report flags, as a set of resolved paths."
    leaks = pd.read_csv(folder/'leaks.csv')
    return {str(Path(p).resolve()) for p in leaks.image[leaks.leak]}


def linked(df, folder, names):
    "`df` with its images reached through symbolic links of the given names (a renamed copy without copying)."
    folder.mkdir(parents=True)
    for p, n in zip(df.image, names): (folder/f'{n}.png').symlink_to(Path(p).resolve())
    return df.assign(image=[str(folder/f'{n}.png') for n in names])


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


def test_a_shuffled_random_split_is_flagged_like_the_same_table_in_file_order(phantoms, tmp_path):
    data, base = phantoms
    res = cli('bts_leakcheck', '--split', base/'random.csv', '--out', tmp_path/'ordered')
    assert res.returncode == 1, res.stdout + res.stderr
    table = users_table(pd.read_csv(base/'random.csv'), tmp_path/'tables'/'mine.csv')
    res = cli('bts_leakcheck', '--split', table, '--out', tmp_path/'shuffled')
    assert res.returncode == 1 and 'the split LEAKS' in res.stdout and 'numbers in the file names' in res.stdout, res.stdout + res.stderr
    assert flagged(tmp_path/'shuffled') == flagged(tmp_path/'ordered') and flagged(tmp_path/'ordered')
    pd.read_csv(base/'random.csv')[['image', 'mask', 'split']].sample(frac=1, random_state=2).to_csv(tmp_path/'plain.csv', index=False)
    res = cli('bts_leakcheck', '--split', tmp_path/'plain.csv', '--out', tmp_path/'plain')                 # bts_nb's column names, absolute paths
    assert res.returncode == 1 and flagged(tmp_path/'plain') == flagged(tmp_path/'ordered'), res.stdout + res.stderr
    res = cli('bts_leakcheck', '--split', users_table(pd.read_csv(base/'block.csv'), tmp_path/'tables'/'block.csv', shuffle_seed=1))
    assert res.returncode == 0 and 'no leak beyond the false rate' in res.stdout, res.stdout + res.stderr


def test_no_verdict_without_patient_structure_or_with_a_blind_calibration(phantoms, tmp_path):
    data, base = phantoms
    random = pd.read_csv(base/'random.csv')[['image', 'mask', 'split']]
    letters = [''.join(chr(97 + int(c)) for c in f'{k:03d}') for k in range(len(random))]       # names without a number
    linked(random, tmp_path/'plain', [f'scan_{n}' for n in letters]).to_csv(tmp_path/'plain.csv', index=False)
    res = cli('bts_leakcheck', '--split', tmp_path/'plain.csv', '--out', tmp_path/'r')
    assert res.returncode == 3 and 'NO VERDICT: no patient structure' in res.stdout and 'patient column' in res.stdout, res.stdout + res.stderr
    assert json.loads((tmp_path/'r'/'leak_summary.json').read_text())['verdict'] == 'no verdict'
    numbers = np.random.default_rng(0).permutation(len(random))                                   # a numbering that ignores the patients
    linked(random, tmp_path/'dealt', numbers).to_csv(tmp_path/'dealt.csv', index=False)
    res = cli('bts_leakcheck', '--split', tmp_path/'dealt.csv')
    assert res.returncode == 3 and 'the calibration is blind' in res.stdout, res.stdout + res.stderr
    res = cli('bts_leakcheck', '--split', tmp_path/'dealt.csv', '--min_sensitivity', 0)       # the floor is what refuses
    assert res.returncode in (0, 1) and 'NO VERDICT' not in res.stdout, res.stdout + res.stderr


def test_a_fold_table_is_checked_fold_against_the_rest(phantoms, tmp_path):
    data, base = phantoms
    pairs = read_pairs(data, verbose=False)
    dealt = pairs.assign(fold=np.random.default_rng(0).integers(0, 4, len(pairs)))              # slices dealt to 4 folds at random
    res = cli('bts_leakcheck', '--split', users_table(dealt, tmp_path/'dealt.csv'), '--out', tmp_path/'d')
    assert res.returncode == 1, res.stdout + res.stderr
    sides = json.loads((tmp_path/'d'/'leak_summary.json').read_text())['sides']
    assert sorted(sides) == ['fold 0', 'fold 1', 'fold 2', 'fold 3'] and all(v['share'] > 0.3 for v in sides.values()), sides
    whole = fold_groups(pairs, k=4, n_blocks=8)                                                  # whole blocks per fold
    res = cli('bts_leakcheck', '--split', users_table(whole, tmp_path/'whole.csv'))
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_slice_listed_twice_or_on_both_sides_is_named(phantoms, tmp_path):
    data, base = phantoms
    table = pd.read_csv(base/'block.csv')[['image', 'mask', 'split']]
    twice = pd.concat([table, table.iloc[[5]].assign(split='valid' if table.split.iloc[5] == 'train' else 'train')])
    twice.to_csv(tmp_path/'twice.csv', index=False)
    res = cli('bts_leakcheck', '--split', tmp_path/'twice.csv')
    assert res.returncode == 2 and Path(table.image.iloc[5]).name in res.stderr and 'on both sides (train and valid)' in res.stderr, res.stderr


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


def test_train_stops_on_a_shuffled_leaking_table_and_on_one_it_cannot_judge(phantoms, tmp_path):
    data, base = phantoms
    table = users_table(pd.read_csv(base/'random.csv'), tmp_path/'mine.csv')
    opts = ['--data', data, '--arch', 'smp_unet', '--encoder', 'resnet18', '--size', 64, '--epochs', 1]
    res = cli('bts_train', '--out', tmp_path/'run', '--split', table, *opts)
    assert res.returncode == 2 and 'this split leaks' in res.stderr, res.stderr[-2000:]
    random = pd.read_csv(base/'random.csv')[['image', 'mask', 'split']]
    linked(random, tmp_path/'plain', [f'scan_{chr(97 + k % 26)}{chr(97 + k // 26)}' for k in range(len(random))]).to_csv(tmp_path/'plain.csv', index=False)
    res = cli('bts_train', '--out', tmp_path/'run', '--split', tmp_path/'plain.csv', *opts)
    assert res.returncode == 2 and 'the leak check cannot judge this split' in res.stderr and '--allow_leaky_split' in res.stderr, res.stderr[-2000:]
    assert not (tmp_path/'run').exists()                                               # stopped before anything was written


@needs_lgg
def test_lgg_slices_dealt_at_random_leak_and_the_patient_split_does_not(tmp_path):
    pairs = read_pairs(LGG, verbose=False)
    dealt = pairs.assign(split=np.where(np.random.default_rng(0).random(len(pairs)) < 0.2, 'valid', 'train'))
    res = cli('bts_leakcheck', '--split', users_table(dealt, tmp_path/'dealt.csv'), '--channel', 'all', '--out', tmp_path/'d')
    assert res.returncode == 1 and 'case folders' in res.stdout, res.stdout + res.stderr
    valid = json.loads((tmp_path/'d'/'leak_summary.json').read_text())['sides']['valid']
    assert valid['share'] > 0.25 and valid['shared_patients'] == pairs.patient.nunique(), valid
    res = cli('bts_leakcheck', '--data', LGG, '--channel', 'all')
    assert res.returncode == 0 and 'no leak beyond the false rate' in res.stdout, res.stdout + res.stderr


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
    res = cli('bts_leakcheck', '--split', users_table(pd.read_csv(tmp_path/'random.csv'), tmp_path/'mine'/'random.csv'), '--out', tmp_path/'shuffled')
    assert res.returncode == 1 and flagged(tmp_path/'shuffled') == flagged(tmp_path/'random'), res.stdout + res.stderr
    assert len(split) == (pairs.split != 'train').sum()
