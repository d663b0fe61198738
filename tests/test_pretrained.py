"""Pretrained encoders from the installed weights packages: the key mapping proved by an ImageNet classification,
a pretrained run on the phantoms that must learn, and the offline failures that must be named."""
import json, subprocess, sys
from pathlib import Path
import matplotlib
import pandas as pd
import pytest
from PIL import Image

from bts_nb.phantoms import make_synthetic
from bts_nb.encoders import PACKAGED_ENCODERS, imagenet_top, timm_encoder, weights_record

BTS_TRAIN = str(Path(sys.executable).parent/'bts_train')
HOPPER = Path(matplotlib.get_data_path())/'sample_data'/'grace_hopper.jpg'


@pytest.mark.parametrize('encoder', list(PACKAGED_ENCODERS))
def test_packaged_weights_classify_imagenet(encoder):
    "Every packaged encoder, mapped onto timm's names, calls Grace Hopper's photograph ImageNet 652 (military uniform)."
    rec = weights_record(encoder)
    assert rec['sha256'] == PACKAGED_ENCODERS[encoder][1]
    top = imagenet_top(timm_encoder(encoder, pretrained=True, n_in=3), Image.open(HOPPER))
    assert top[0][0] == 652, top


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp('data')/'syn', n_patients=10, n_slices=8, size=96)


def test_pretrained_run_learns(phantoms, tmp_path):
    "A short fine-tuning run of fastai's DynamicUnet on the pretrained lite0 body segments the phantoms' tumours."
    out = tmp_path/'run'
    r = subprocess.run([BTS_TRAIN, '--data', phantoms, '--out', out, '--arch', 'dynamic_unet', '--encoder', 'tf_efficientnet_lite0',
                        '--pretrained', 'true', '--size', '96', '--bs', '4', '--epochs', '12', '--valid_pct', '0.3'],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((out/'model_card.json').read_text())
    assert card['encoder_weights']['sha256'] == PACKAGED_ENCODERS['tf_efficientnet_lite0'][1]
    per_image = pd.read_csv(out/'per_image_valid.csv')
    tumour = per_image[per_image.gt_px > 0]
    assert len(tumour) >= 5
    # an empty prediction scores 0 on these slices, so a model that learnt nothing cannot pass.
    # Measured with the default schedule (every layer from the first step at 1e-3), one thread of a 2-core AMD EPYC:
    # global Dice 0.478, median tumour slice 0.565.
    assert card['metrics']['valid']['dice_global'] > 0.4, card['metrics']['valid']
    assert tumour.dice.median() > 0.45, tumour.dice.describe()


def test_pretrained_failures_are_named(tmp_path):
    "Offline, ImageNet weights that are not packaged fail fast with the alternatives named; bad schedule values are refused."
    r = subprocess.run([BTS_TRAIN, '--out', tmp_path/'a', '--encoder', 'resnet34', '--pretrained', 'true', '--epochs', '2'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'tf_efficientnet_lite0' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([BTS_TRAIN, '--out', tmp_path/'b', '--freeze_epochs', '-1'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'freeze_epochs -1' in r.stderr
    r = subprocess.run([BTS_TRAIN, '--out', tmp_path/'c', '--lr_mult', '0.5'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'lr_mult 0.5' in r.stderr
    assert not any((tmp_path/n).exists() and any((tmp_path/n).iterdir()) for n in 'abc')    # nothing written for a refused run
