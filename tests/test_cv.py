"""Patient-wise cross-validation as users meet it: `bts_train --folds k` on phantoms (every slice scored once, by the
model that never saw its patient), resuming after an interruption, bad options refused, the folds as an ensemble in
`bts_predict`; on the shared LGG data when present, folds of whole patients."""
import json
from pathlib import Path
import numpy as np, pandas as pd
import pytest

import bts_nb.cv as cv_module
from bts_nb.phantoms import make_synthetic
from bts_nb.runs import TrainConfig
from bts_nb.cv import cross_validate
from conftest import LGG, needs_lgg, cli

ONE_EPOCH = ('--arch', 'smp_unet', '--encoder', 'resnet18', '--pretrained', 'false', '--size', '64', '--epochs', '1')


@pytest.fixture(scope='module')
def cv_run(tmp_path_factory):
    "Six phantom patients of 8 slices, cross-validated in 3 folds of one epoch each by the CLI."
    base = tmp_path_factory.mktemp('cv')
    data = make_synthetic(base/'syn', n_patients=6, n_slices=8, size=64)
    res = cli('bts_train', '--data', data, '--out', base/'cv', '--folds', 3, *ONE_EPOCH)
    return data, base/'cv', res


def test_folds_score_every_slice_once_without_shared_patients(cv_run):
    data, cv, res = cv_run
    assert res.returncode == 0, res.stderr
    assert '3-fold cross-validation' in res.stdout
    truth = pd.read_csv(data/'patients.csv').set_index('number')['patient']
    oof = pd.read_csv(cv/'per_image_oof.csv')
    assert sorted(oof.image) == sorted(str(p.resolve()) for p in (data/'images').glob('*.png'))   # every slice once
    for i in range(3):
        split = pd.read_csv(cv/f'fold_{i}'/'split.csv')
        split['true_patient'] = split['number'].map(truth)
        held = set(split.loc[split.split == 'test', 'true_patient'])
        assert held and not held & set(split.loc[split.split != 'test', 'true_patient']), f"fold {i} shares a phantom"
        assert set(oof.loc[oof.fold == i, 'image']) == set(split.loc[split.split == 'test', 'image'])
        assert json.loads((cv/f'fold_{i}'/'leak_check.json').read_text())['leaky'] is False
    summary = json.loads((cv/'cv_summary.json').read_text())
    assert len(summary['per_fold']) == 3 and summary['out_of_fold']['n_images'] == len(oof)
    dice = [f['dice_mean'] for f in summary['per_fold']]
    assert summary['over_folds']['dice_mean']['mean'] == pytest.approx(np.mean(dice))
    assert summary['over_folds']['dice_mean']['sd'] == pytest.approx(np.std(dice, ddof=1))


def test_folds_predict_as_an_ensemble(cv_run, tmp_path):
    data, cv, _ = cv_run
    res = cli('bts_predict', '--model', cv, '--input', data, '--out', tmp_path/'pred')
    assert res.returncode == 0, res.stderr
    assert 'an ensemble of 3 fold models' in res.stdout
    table = pd.read_csv(tmp_path/'pred'/'predictions.csv')
    assert (table.status == 'ok').all() and len(table) == 48
    assert table.uncertainty_mean_in_mask.notna().any()            # the members' spread, without TTA


def test_cv_refuses_bad_options_and_foreign_folders(cv_run, tmp_path):
    data, cv, _ = cv_run
    res = cli('bts_train', '--data', data, '--out', tmp_path/'a', '--folds', 1, *ONE_EPOCH)
    assert res.returncode == 2 and 'at least 2 folds' in res.stderr
    res = cli('bts_train', '--data', data, '--out', tmp_path/'b', '--folds', 7, *ONE_EPOCH)   # 6 patients
    assert res.returncode == 2 and 'cannot make 7 folds' in res.stderr
    res = cli('bts_train', '--data', data, '--out', tmp_path/'c', '--folds', 3, '--split', cv/'splits'/'fold_0.csv', *ONE_EPOCH)
    assert res.returncode == 2 and 'makes its own splits' in res.stderr
    res = cli('bts_train', '--data', data, '--out', tmp_path/'d', '--folds', 3, '--test_pct', 0.2, *ONE_EPOCH)
    assert res.returncode == 2 and 'each fold is the test set' in res.stderr
    assert not any(tmp_path.glob('[abcd]'))                          # nothing written for a refused run
    mine = tmp_path/'mine'; mine.mkdir(); (mine/'notes.txt').write_text('keep')
    res = cli('bts_train', '--data', data, '--out', mine, '--folds', 3, '--overwrite', *ONE_EPOCH)
    assert res.returncode == 2 and 'does not hold a cross-validation' in res.stderr
    assert [p.name for p in mine.iterdir()] == ['notes.txt']
    res = cli('bts_train', '--data', data, '--out', cv, '--folds', 3, *ONE_EPOCH)
    assert res.returncode == 2 and '--resume to finish it' in res.stderr
    res = cli('bts_train', '--data', data, '--out', cv, *ONE_EPOCH, '--overwrite')   # a single run over a CV: refused
    assert res.returncode == 2 and 'holds a cross-validation' in res.stderr
    assert (cv/'fold_0'/'model.safetensors').exists()
    res = cli('bts_train', '--data', data, '--out', tmp_path/'e', '--fold', 0, *ONE_EPOCH)   # --fold alone starts nothing
    assert res.returncode == 2 and 'holds no cross-validation; start one with --folds' in res.stderr
    res = cli('bts_train', '--out', cv, '--fold', 'two')
    assert res.returncode == 2 and 'give fold numbers' in res.stderr
    res = cli('bts_train', '--out', cv, '--fold', '1,3')
    assert res.returncode == 2 and 'has folds 0 to 2' in res.stderr
    assert not any(tmp_path.glob('e'))


def test_fold_option_continues_the_saved_cross_validation(cv_run):
    data, cv, _ = cv_run
    res = cli('bts_train', '--out', cv, '--fold', 1)            # a finished fold: kept, and the summary gathered again
    assert res.returncode == 0, res.stderr
    assert 'fold 1: finished earlier, kept' in res.stdout and '3-fold cross-validation' in res.stdout


def test_interrupted_cv_resumes_without_redoing_finished_folds(tmp_path, monkeypatch):
    data = make_synthetic(tmp_path/'syn', n_patients=6, n_slices=8, size=64)
    cfg = TrainConfig(data=str(data), arch='smp_unet', arch_kw={}, pretrained=False, size=64, epochs=1)
    real_train, calls = cv_module.train, []
    def stop_in_fold_1(cfg, out, **kw):
        calls.append(Path(out).name)
        if Path(out).name == 'fold_1': raise KeyboardInterrupt("interrupted before the first epoch ended")
        return real_train(cfg, out, **kw)
    monkeypatch.setattr(cv_module, 'train', stop_in_fold_1)
    with pytest.raises(KeyboardInterrupt, match='finished fold_0; stopped in fold_1'):
        cross_validate(cfg, tmp_path/'cv', folds=3, verbose=False)
    first = (tmp_path/'cv'/'fold_0'/'model.safetensors').stat().st_mtime_ns
    assert not (tmp_path/'cv'/'cv_summary.json').exists()
    monkeypatch.setattr(cv_module, 'train', real_train)
    res = cli('bts_train', '--out', tmp_path/'cv', '--resume')
    assert res.returncode == 0, res.stderr
    assert 'fold 0: finished earlier, kept' in res.stdout
    assert (tmp_path/'cv'/'fold_0'/'model.safetensors').stat().st_mtime_ns == first
    assert len(json.loads((tmp_path/'cv'/'cv_summary.json').read_text())['per_fold']) == 3


@needs_lgg
def test_lgg_folds_hold_whole_patients_and_keep_their_channel(tmp_path):
    from bts_nb.data import seg_dataloaders, split_source
    from bts_nb.splits import fold_groups, fold_split, save_split
    folds = fold_groups(split_source(LGG, valid_pct=0.0, verbose=False), k=5)
    assert folds.groupby('patient').fold.nunique().max() == 1
    assert sorted(folds.groupby('fold').patient.nunique()) == [3, 4, 4, 4, 5]
    path = save_split(fold_split(folds, 0), tmp_path/'fold_0.csv')
    dls = seg_dataloaders(split=path, size=64, bs=4, verbose=False)
    assert dls.channel == 'all'                                      # a saved LGG split reads what it was split with, not channel 0
