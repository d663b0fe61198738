"""Distributed training on 2 CPU processes (gloo), launched by `bts_train --nproc 2` through torchrun: one complete run folder
written by rank 0, a model that learns, validation metrics gathered from both processes that equal a one-process evaluation
of the saved weights, and --resume after one rank was killed mid-epoch."""
import json, os, signal, subprocess, time
import pandas as pd
import psutil
import pytest

from conftest import BIN, cli


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory):
    from bts_nb.phantoms import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp('ddp')/'syn', n_patients=15, n_slices=9, size=64)


def args(data, out, epochs):
    return ['--data', data, '--out', out, '--arch', 'smp_unet', '--encoder', 'resnet18', '--size', '64', '--epochs', str(epochs),
            '--bs', '4', '--lr', '5e-3', '--valid_pct', '0.35', '--precision', 'fp32', '--nproc', '2']   # 5 of 15 patients: 45 slices


def one_process_validation(run) -> list:
    "Validation loss and metrics of run/model.safetensors on the run's own split, computed in this one process."
    from bts_nb.train import TrainConfig
    from bts_nb.data import seg_dataloaders
    from bts_nb.learner import seg_learner
    from bts_nb.serialize import load_weights
    cfg = TrainConfig.from_yaml(run/'config.yaml')
    dls = seg_dataloaders(cfg.data, size=cfg.size, bs=cfg.bs, split=run/'split.csv', verbose=False, num_workers=0)
    learn = seg_learner(dls, cfg.arch, cfg.loss, pretrained=False, threshold=cfg.threshold, **cfg.arch_kw)
    load_weights(learn.model, run/'model.safetensors')
    with learn.no_bar(): return [float(v) for v in learn.validate()]


def test_two_processes_train_one_run_with_gathered_metrics(phantoms, tmp_path):
    run = tmp_path/'run'
    res = cli('bts_train', *args(phantoms, run, 12))
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == ['config.yaml', 'curves.png', 'eval.json', 'metrics.csv', 'model.onnx',
                                                      'model.safetensors', 'model_card.json', 'per_image_valid.csv', 'split.csv']
    card = json.loads((run/'model_card.json').read_text())
    assert card['processes'] == 2 and card['global_batch'] == 8
    log = pd.read_csv(run/'metrics.csv')
    assert log.epoch.tolist() == list(range(12))                                # one writer: each epoch logged once
    split = pd.read_csv(run/'split.csv')
    n_valid = int((split.split == 'valid').sum())
    assert n_valid % 2 == 1                                                     # odd: DistributedDL pads a share, the metrics must drop it
    assert len(pd.read_csv(run/'per_image_valid.csv')) == n_valid
    assert card['metrics']['valid']['dice_global'] > 0.25, card['metrics']['valid']  # it learned: one that learns nothing scores about 0 on unseen patients
    # the metrics logged during training (both processes' batches gathered) are those of the whole validation set, each image once
    # (not the loss: fastai averages each process's batch losses, the repeated padding sample included)
    best = log.iloc[card['best_epoch']]
    single = one_process_validation(run)[1:]
    assert single == pytest.approx(best[['dice', 'dice_global', 'iou', 'hd95']].tolist(), abs=1e-6), (single, best.tolist())


def rank_processes(launcher) -> dict:
    "The training processes under a `bts_train --nproc` launcher, by rank."
    out = {}
    for p in psutil.Process(launcher).children(recursive=True):
        try: env = p.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess): continue
        if 'RANK' in env and 'LOCAL_RANK' in env: out[int(env['RANK'])] = p
    return out


def epochs_saved(run) -> int:
    "Epochs in the run's checkpoint (written atomically after each epoch's log line and best weights): what --resume restarts from."
    from bts_nb.serialize import checkpoint_info
    try: return int(checkpoint_info(run/'checkpoint.safetensors')['epochs_done'])
    except (FileNotFoundError, ValueError): return 0


@pytest.mark.parametrize('victim', [0, 1])
def test_resume_after_a_rank_is_killed_mid_epoch(phantoms, tmp_path, victim):
    run = tmp_path/'run'
    job = subprocess.Popen([str(BIN/'bts_train'), *map(str, args(phantoms, run, 6))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)
    deadline = time.time() + 400
    while epochs_saved(run) < 2:                                                # not metrics.csv: its line comes before the checkpoint
        assert job.poll() is None, job.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "two epochs did not finish in 400 s"
        time.sleep(0.2)
    time.sleep(1.5)                                                             # into the third epoch
    ranks = rank_processes(job.pid)
    assert sorted(ranks) == [0, 1]
    ranks[victim].send_signal(signal.SIGKILL)
    try: rc = job.wait(timeout=120)                                             # torchrun ends the other rank: no hang
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL); pytest.fail("the job hung after a rank was killed")
    assert rc != 0
    done = epochs_saved(run)
    assert 2 <= done < 6 and not (run/'model_card.json').exists()
    assert len(pd.read_csv(run/'metrics.csv')) >= done                          # a line logged after the last checkpoint is dropped on resume
    res = cli('bts_train', '--out', run, '--resume', '--nproc', '2')
    assert res.returncode == 0, res.stderr[-3000:]
    assert f'resuming {run} after epoch {done} of 6' in res.stdout
    log = pd.read_csv(run/'metrics.csv')
    assert log.epoch.tolist() == list(range(6))
    assert (run/'model_card.json').exists() and not (run/'checkpoint.safetensors').exists()
