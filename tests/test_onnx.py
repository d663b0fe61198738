"""ONNX Runtime as the CPU backend: bts_train writes model.onnx; bts_predict, bts_evaluate and the app take it and say so;
its masks are PyTorch's; a missing, stale or changed file, or no onnxruntime, sends `auto` back to PyTorch with the reason."""
import json, shutil
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import FIGSHARE, needs_figshare, cli


def same_masks(onnx_seg, torch_seg, imgs):
    "Probabilities of the two segmenters within 1e-4; a mask pixel may differ only where PyTorch's probability is that close to the threshold."
    p_onnx, p_torch = (np.stack(s.probs(imgs)[0]) for s in (onnx_seg, torch_seg))
    assert np.abs(p_onnx - p_torch).max() < 1e-4
    differ = (p_onnx > 0.5) != (p_torch > 0.5)
    assert (np.abs(p_torch[differ] - 0.5) < 1e-4).all()
    return (p_torch > 0.5).reshape(len(imgs), -1).any(1).sum()       # slices with tumour in the mask


def copy_run(exp, dest):
    dest.mkdir()
    for f in ('model.safetensors', 'model_card.json', 'model.onnx'): shutil.copy(exp/f, dest/f)
    return dest


def test_onnx_gives_pytorchs_masks(learned):
    from bts_nb.inference import Segmenter
    from bts_nb.readers import read_slice_u8
    data, exp = learned
    assert (exp/'model.onnx').is_file() and json.loads((exp/'model_card.json').read_text())['onnx']['max_abs_diff'] < 1e-3
    onnx_seg, torch_seg = Segmenter(exp, device='cpu'), Segmenter(exp, device='cpu', backend='torch')
    assert (onnx_seg.backend, torch_seg.backend) == ('onnx', 'torch')
    imgs = [read_slice_u8(p) for p in sorted((data/'images').glob('*.png'))]
    assert same_masks(onnx_seg, torch_seg, imgs) >= 20                  # tumours compared, not only empty masks
    assert same_masks(onnx_seg, torch_seg, imgs[:8]) >= 1               # a batch of another size than the export's


@needs_figshare
def test_default_network_on_real_slices(tmp_path):
    "The default network (pretrained lite0 U-Net) trained briefly on 96 real slices: bts_train writes model.onnx, and bts_predict runs it with PyTorch's masks."
    sub = tmp_path/'fig'
    for d in ('images', 'masks'): (sub/d).mkdir(parents=True)
    for n in range(1, 97):
        for d in ('images', 'masks'): shutil.copy(FIGSHARE/d/f'{n}.png', sub/d/f'{n}.png')
    r = cli('bts_train', '--data', sub, '--out', tmp_path/'run', '--size', 128, '--epochs', 3, '--allow_leaky_split')
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((tmp_path/'run'/'model_card.json').read_text())
    assert card['arch_kw'] == {'encoder': 'tf_efficientnet_lite0'} and card['onnx']['exporter'] == 'torch.export'
    preds = {}
    for backend, note in (('auto', 'backend: ONNX Runtime on the CPU'), ('torch', 'backend: PyTorch, as asked')):
        r = cli('bts_predict', '--model', tmp_path/'run', '--input', sub, '--out', tmp_path/backend, '--backend', backend, '--save', 'mask')
        assert r.returncode == 0 and note in r.stdout, r.stdout + r.stderr[-2000:]
        preds[backend] = pd.read_csv(tmp_path/backend/'predictions.csv').set_index('file')
    assert np.abs(preds['auto'].dice - preds['torch'].dice).max() < 1e-3
    masks = [[np.asarray(Image.open(tmp_path/b/f'{n}_mask.png')) > 0 for n in range(1, 97)] for b in ('auto', 'torch')]
    differ = sum(int((a != t).sum()) for a, t in zip(*masks))
    assert differ <= 1e-5 * 96 * 256 * 256, differ                      # at most a few pixels on the threshold
    assert sum(t.any() for t in masks[1]) >= 10                          # the masks hold tumour


def test_auto_falls_back_to_pytorch_and_says_why(learned, tmp_path):
    data, exp = learned
    run = copy_run(exp, tmp_path/'run')
    (run/'model.onnx').unlink()
    r = cli('bts_predict', '--model', run, '--input', data/'images'/'3.png', '--out', tmp_path/'p1')
    assert r.returncode == 0 and 'backend: PyTorch: ' in r.stdout and 'model.onnx: missing; make it with: bts_export_onnx' in r.stdout, r.stdout + r.stderr
    r = cli('bts_predict', '--model', run, '--input', data/'images'/'3.png', '--out', tmp_path/'p2', '--backend', 'onnx')
    assert r.returncode == 2 and 'backend onnx:' in r.stderr and 'missing' in r.stderr
    assert not (tmp_path/'p2'/'predictions.csv').exists()
    r = cli('bts_export_onnx', '--model', run)
    assert r.returncode == 0 and 'largest logit difference from PyTorch' in r.stdout, r.stderr
    r = cli('bts_evaluate', '--model', run, '--data', data, '--out', tmp_path/'ev')
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path/'ev'/'summary.json').read_text())['backend'] == 'onnx'


def test_stale_or_changed_file_is_never_used(learned, tmp_path):
    from bts_nb.onnx_runtime import choose_backend
    data, exp = learned
    run = copy_run(exp, tmp_path/'run')
    card = json.loads((run/'model_card.json').read_text())
    card['onnx']['weights_sha256'] = '0' * 64                            # as if the weights were replaced after export
    (run/'model_card.json').write_text(json.dumps(card))
    backend, note = choose_backend(run)
    assert backend == 'torch' and 'exported from other weights' in note
    other = copy_run(exp, tmp_path/'other')
    with open(other/'model.onnx', 'r+b') as f: f.truncate(1000)          # a cut file
    assert choose_backend(other)[0] == 'torch' and 'changed since it was exported' in choose_backend(other)[1]
    with pytest.raises(ValueError, match='backend onnx: .*changed since it was exported'): choose_backend(other, 'onnx')
    assert choose_backend(exp, 'auto', 'cuda')[0] == 'torch'
    with pytest.raises(ValueError, match='choose auto, torch, onnx'): choose_backend(exp, 'tensorrt')


def test_without_onnxruntime_pytorch_serves(learned, monkeypatch, capsys, tmp_path):
    import bts_nb.onnx_runtime as ort_mod
    from bts_nb.inference import Segmenter
    data, exp = learned
    monkeypatch.setattr(ort_mod, 'onnxruntime_installed', lambda: False)
    seg = Segmenter(exp, device='cpu')
    assert seg.backend == 'torch' and 'onnxruntime is not installed' in seg.backend_note
    run = copy_run(exp, tmp_path/'run'); (run/'model.onnx').unlink()
    assert ort_mod.export_after_training(run) is None and not (run/'model.onnx').exists()
    assert 'not written (onnx or onnxruntime is not installed); PyTorch serves this run' in capsys.readouterr().err


def test_failed_export_leaves_the_run_complete(learned, monkeypatch, capsys, tmp_path):
    import bts_nb.onnx_runtime as ort_mod
    data, exp = learned
    run = copy_run(exp, tmp_path/'run'); (run/'model.onnx').unlink()
    card = json.loads((run/'model_card.json').read_text()); del card['onnx']       # as a run's card is before its export
    (run/'model_card.json').write_text(json.dumps(card))
    def fail(*a, **k): raise RuntimeError('the exporter cannot trace this')
    monkeypatch.setattr(ort_mod, '_export_graph', fail)
    assert ort_mod.export_after_training(run) is None
    assert 'not written (RuntimeError: the exporter cannot trace this); PyTorch serves this run' in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ['model.safetensors', 'model_card.json']   # no half file left
    assert json.loads((run/'model_card.json').read_text()) == card


def test_fastais_dynamic_unet_exports_through_torchscript(tmp_path):
    "torch.export cannot trace fastai's DynamicUnet; the TorchScript exporter can, and the file matches PyTorch."
    import torch
    from bts_nb.models import build_model
    from bts_nb.onnx_runtime import _export_graph, OnnxModel
    model = build_model('dynamic_unet', n_in=1, size=64, pretrained=False).eval()
    assert _export_graph(model, torch.randn(2, 1, 64, 64), tmp_path/'m.onnx') == 'torchscript'
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad(): assert np.abs(OnnxModel(tmp_path/'m.onnx')(x).numpy() - model(x).numpy()).max() < 1e-4
