"""The device pipeline (chapter `device_data`) end to end on the CPU: a model trained through the cache really learns, the
long GPU run's script works in its dry run, and bad choices are refused by name. The cache's exactness, the augmentation's
statistics and the device metrics are tested in the notebooks (`nbdev_test`)."""
import json, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

from conftest import cli

BENCH = Path(__file__).resolve().parents[1]/'bench'


def test_device_pipeline_really_learns(tmp_path):
    "The recipe and floor of `test_train.py::test_small_model_really_learns`, trained through the device pipeline: a misaligned mask or a broken augmentation fails it."
    from bts_nb.phantoms import make_synthetic
    from bts_nb.train import TrainConfig, train
    data = make_synthetic(tmp_path/'syn', n_patients=16, n_slices=8, size=64)
    train(TrainConfig(data=str(data), arch='smp_unet', arch_kw={}, pretrained=False, size=64, epochs=20, lr=5e-3, valid_pct=0.25,
                      pipeline='device', hd95_every=5), tmp_path/'exp', verbose=False)
    card = json.loads((tmp_path/'exp'/'model_card.json').read_text())
    assert (card['pipeline_used'], card['hd95_every']) == ('device', 5)
    v = card['metrics']['valid']
    assert v['dice_global'] > 0.5 and v['dice_median'] > 0.5, v
    assert v['missed_tumour_rate'] < 0.35, v
    log = pd.read_csv(tmp_path/'exp'/'metrics.csv')
    assert log.hd95.notna().tolist() == [(e + 1) % 5 == 0 or e == 19 for e in range(20)]     # HD95 every 5th epoch and the last


def test_gpu_long_dry_run(tmp_path):
    "bench/gpu_long.py runs its commands on the phantoms (block split, and a 2-fold cross-validation) and writes its records."
    for extra in ([], ['--folds']):
        r = subprocess.run([sys.executable, str(BENCH/'gpu_long.py'), '--dry-run', '--out', str(tmp_path), *extra],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    rec = tmp_path/'records'
    table = pd.read_csv(rec/'gpu_long.csv')
    assert table.name.tolist() == ['block_long', 'fig_cv5_long/fold_0', 'fig_cv5_long/fold_1']
    assert (table.pipeline == 'device').all() and (table.epochs == 1).all() and table.dice_mean.between(0, 1).all()
    for run in ('block_long', 'fig_cv5_long/fold_0', 'fig_cv5_long/fold_1'):
        assert {'config.yaml', 'eval.json', 'metrics.csv', 'model_card.json', 'per_image_test.csv', 'machine.json'} <= {p.name for p in (rec/run).iterdir()}
        assert not list((rec/run).glob('*.safetensors'))                                   # light files only
    assert (rec/'fig_cv5_long'/'cv_summary.json').exists()


@pytest.mark.parametrize('args,message', [(['--pipeline', 'device', '--aug', 'heavy'], 'cpu pipeline'),
                                          (['--pipeline', 'gpu'], 'choose one of auto, cpu, device'),
                                          (['--hd95_every', '-1'], 'hd95_every -1')])
def test_bad_pipeline_choices_are_refused(tmp_path, args, message):
    r = cli('bts_train', '--out', tmp_path/'run', '--epochs', 1, '--size', 64, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path/'run').exists()
