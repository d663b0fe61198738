"""The quick tier (`pytest -m quick`): one small model on the phantoms goes the whole way a user takes it, through
every module, in a few minutes on 2 cores. `bts_train` exercises data, splits, leaks, models, encoders, losses,
learner, callbacks, runs and train; `bts_predict` inference, streaming and serialize; then `bts_evaluate`, `bts_figures`,
cross-validation, the app's logic and the widgets. The units' own tests are in the notebooks and the rest of `tests/`."""
import json
import numpy as np, pandas as pd
import pytest
from conftest import cli

pytestmark = pytest.mark.quick


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "Phantoms (8 patients × 6 slices, 64 px) and a 2-epoch model of the default recipe at 32 px, trained by `bts_train`."
    from bts_nb.phantoms import make_synthetic
    base = tmp_path_factory.mktemp('quick')
    data = make_synthetic(base/'syn', n_patients=8, n_slices=6, size=64)
    r = cli('bts_train', '--data', data, '--out', base/'exp', '--size', 32, '--epochs', 2, '--valid_pct', 0.25, '--test_pct', 0.25)
    assert r.returncode == 0, r.stderr[-2000:]
    return data, base/'exp'


def test_training_writes_a_complete_run(tiny):
    data, exp = tiny
    for f in ('model.safetensors', 'model_card.json', 'config.yaml', 'split.csv', 'metrics.csv', 'per_image_valid.csv', 'per_image_test.csv'):
        assert (exp/f).is_file(), f
    assert not (exp/'checkpoint.safetensors').exists()          # a finished run keeps no checkpoint
    card = json.loads((exp/'model_card.json').read_text())
    assert card['epochs_trained'] == 2 and card['size'] == 32 and card['pretrained'] is True
    split = pd.read_csv(exp/'split.csv')
    assert split.patient.notna().all() and split.groupby('patient').split.nunique().max() == 1    # the phantoms' patients, each on one side


def test_bts_evaluate_gives_the_training_evaluation(tiny, tmp_path):
    "One prediction path: the run's held-out table and `bts_evaluate` on its saved model, through PyTorch as in training, agree slice by slice."
    data, exp = tiny
    r = cli('bts_evaluate', '--model', exp, '--split', exp/'split.csv', '--side', 'test', '--out', tmp_path/'ev', '--backend', 'torch')
    assert r.returncode == 0, r.stderr[-2000:]
    both = pd.read_csv(exp/'per_image_test.csv').merge(pd.read_csv(tmp_path/'ev'/'per_image.csv'), on='image')
    assert len(both) == len(pd.read_csv(exp/'per_image_test.csv')) > 0
    np.testing.assert_allclose(both.dice_x, both.dice_y, atol=1e-9)
    np.testing.assert_allclose(both.pred_px_x, both.pred_px_y)


def test_bts_predict_and_figures(tiny, tmp_path):
    data, exp = tiny
    r = cli('bts_predict', '--model', exp, '--input', data, '--out', tmp_path/'pred', '--tta', 'flip')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'backend: ONNX Runtime on the CPU' in r.stdout                     # bts_train wrote model.onnx; a CPU run takes it
    pred = pd.read_csv(tmp_path/'pred'/'predictions.csv')
    assert len(pred) == 48 and (pred.status == 'ok').all() and pred.has_truth.all()
    assert len(list((tmp_path/'pred').glob('*_uncertainty.png'))) == 48        # TTA gives the uncertainty maps
    r = cli('bts_figures', '--model', exp, '--pred', tmp_path/'pred', '--out', tmp_path/'figs')
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path/'figs').glob('*.png'))) >= 3


def test_leak_check_passes_the_runs_split(tiny, tmp_path):
    data, exp = tiny
    r = cli('bts_leakcheck', '--split', exp/'split.csv', '--out', tmp_path/'leaks')
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-1000:]
    assert 'no leak' in r.stdout


def test_app_switches_tta_on_one_model(tiny):
    from bts_nb.app import SliceApp
    data, exp = tiny
    app = SliceApp(exp)
    ov, unc, mask_path, msg, note = app.run(data/'images'/'3.png', tta=True)
    assert ov.shape == (64, 64, 3) and unc is not None and 'flipped' in msg
    ov, unc, mask_path, msg, note = app.run(data/'images'/'3.png', tta=False)
    assert unc is None and 'Turn test-time augmentation on' in note


def test_explorer_scores_what_evaluate_scores(tiny):
    from bts_nb.inference import Segmenter
    from bts_nb.widgets import PredictionExplorer
    data, exp = tiny
    test = pd.read_csv(exp/'per_image_test.csv')
    masks = pd.read_csv(exp/'split.csv').set_index('image').loc[test.image, 'mask']
    ex = PredictionExplorer(Segmenter(exp, device='cpu', backend='torch'), test.image.tolist(), masks.tolist())   # as training scored them
    np.testing.assert_allclose(ex.dice, test.dice, atol=1e-9)


def test_cross_validation_of_two_folds(tiny, tmp_path):
    data, exp = tiny
    r = cli('bts_train', '--data', data, '--out', tmp_path/'cv', '--size', 32, '--epochs', 1, '--folds', 2)
    assert r.returncode == 0, r.stderr[-2000:]
    oof = pd.read_csv(tmp_path/'cv'/'per_image_oof.csv')
    assert len(oof) == 48 and oof.image.is_unique                # every slice scored once, by the fold that did not train on it
