"""The Gradio web app: started with `bts_app` on 127.0.0.1, driven in headless Chromium; bad uploads refused in the page;
concurrent requests served; the Space folder written by `bts_space`."""
import re, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
import pytest
from PIL import Image
from browser import ARTIFACTS, app_server, browser, needs_chromium


BIN = Path(sys.executable).parent


@pytest.fixture(scope='module')
def model(learned):
    "The session's small model that learned (conftest)."
    return learned


@pytest.fixture(scope='module')
def server(model, tmp_path_factory):
    try:
        with app_server(model[1], '--max_mb', 1, log_path=tmp_path_factory.mktemp('applog')/'app.log') as (url, log): yield url, log
    except RuntimeError as e: pytest.fail(str(e))


IDLE = "() => !/processing \\||queue: /.test(document.body.innerText)"     # Gradio's status trackers are gone


def segment_in_page(page, url, path, wait_for):
    "Open the page and upload `path`: the app segments it at once; returns the message once it names the file and `wait_for`."
    page.goto(url, wait_until='load')
    page.locator('#upload input[type=file]').set_input_files(str(path))
    page.wait_for_function("([n, t]) => { const m = document.querySelector('#message').innerText; return m.includes(n) && m.includes(t); }",
                           arg=[Path(path).name, wait_for], timeout=60000)
    page.wait_for_function(IDLE, timeout=60000)
    return page.locator('#message').inner_text()


@needs_chromium
def test_upload_segment_and_bad_files_in_chromium(model, server, tmp_path):
    url, log = server
    data, _ = model
    with browser() as b:
        page = b.new_page(viewport={'width': 1280, 'height': 1000})
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        msg = segment_in_page(page, url, data/'images'/'3.png', 'Tumour area')
        assert 'px' in msg and 'threshold 0.50' in msg and '3.png' in msg
        assert 'Model input 64×64 px' in msg and re.search(r'segmented in \d+\.\d\d s', msg)   # the input size and the time taken
        assert page.locator('#overlay img').count() == 1            # the overlay is shown
        assert page.locator('#uncertainty img').count() == 1        # TTA is on by default: the uncertainty over the slice
        assert 'disagree on P(tumour)' in page.locator('#uncertainty_note').inner_text()   # and one line on what it means
        assert page.locator('#mask a[download], #mask a').count() >= 1   # the mask can be downloaded
        # the examples are held-out slices of the model's own data, and say so
        assert 'never trained on' in page.inner_text('body')
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS/'app_result.png'), full_page=True)
        # TTA off: no map, and the note says why
        page.locator('#tta input').click()
        page.locator('#segment').click()                          # Segment runs the same slice again with the new setting
        page.wait_for_function("() => document.querySelector('#uncertainty_note').innerText.includes('No uncertainty map')", timeout=60000)
        page.wait_for_function(IDLE, timeout=60000)
        page.wait_for_function("() => document.querySelectorAll('#uncertainty img').length == 0", timeout=30000)
        page.locator('#tta input').click()
        # clearing the upload clears the results: nothing of the last slice stays on screen
        page.locator('#upload button[aria-label="Clear"]').click()
        page.wait_for_function("() => document.querySelector('#message').innerText.startsWith('Upload a slice')", timeout=30000)
        assert page.locator('#overlay img').count() == 0 and page.locator('#uncertainty img').count() == 0
        assert page.locator('#mask a').count() == 0
        page.screenshot(path=str(ARTIFACTS/'app_cleared.png'), full_page=True)
        # a new upload is segmented at once, with no press of Segment
        page.locator('#upload input[type=file]').set_input_files(str(data/'images'/'4.png'))
        page.wait_for_function("() => document.querySelector('#message').innerText.includes('4.png')", timeout=60000)
        page.wait_for_function(IDLE, timeout=60000)
        assert page.locator('#overlay img').count() == 1
        # and an example replaces it, results included
        page.locator('#examples button.gallery-item').first.click()
        page.wait_for_function("() => !document.querySelector('#message').innerText.includes('4.png') && "
                               "document.querySelector('#message').innerText.includes('Tumour area')", timeout=60000)
        # a file that is not an image: a message in the page, no stack trace
        (tmp_path/'fake.png').write_bytes(b'this is not an image')
        msg = segment_in_page(page, url, tmp_path/'fake.png', 'Refused')
        assert 'fake.png' in msg and 'not a readable image' in msg and 'Traceback' not in page.content()
        # too many pixels
        Image.fromarray(np.zeros((4200, 4200), np.uint8)).save(tmp_path/'big.png')
        msg = segment_in_page(page, url, tmp_path/'big.png', 'Refused')
        assert '4096' in msg
        page.screenshot(path=str(ARTIFACTS/'app_refused.png'), full_page=True)
        assert not errors, errors
    log.seek(0); assert 'Traceback' not in log.read()


def test_bts_app_refuses_a_missing_examples_folder(model, tmp_path):
    r = subprocess.run([BIN/'bts_app', '--model', str(model[1]), '--examples', str(tmp_path/'nowhere')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'nowhere: no such folder of example slices' in r.stderr


def test_concurrent_requests_and_size_limit(model, server, tmp_path):
    from gradio_client import Client, handle_file
    url, _ = server
    data, _ = model
    client = Client(url, verbose=False)
    files = [data/'images'/f'{n}.png' for n in (1, 2, 3, 4, 5, 6)]
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda f: client.predict(handle_file(str(f)), 0.5, True, api_name='/segment'), files))
    assert all('Tumour area' in r[3] for r in results)
    masks = [np.array(Image.open(r[2])) for r in results]
    assert all(m.shape == (64, 64) for m in masks)
    truth = [np.array(Image.open(data/'masks'/f.name)) > 0 for f in files]
    from bts_nb.metrics import dice_score
    assert np.mean([dice_score(m > 0, t) for m, t in zip(masks, truth) if t.any()]) > 0.5   # the app serves the model's real masks
    # over the server's size limit (1 MB here): refused before or by the app, never processed
    big = tmp_path/'big.tif'
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1100, 1100), dtype=np.uint8)).save(big)
    try: r = client.predict(handle_file(str(big)), 0.5, False, api_name='/segment'); refused = 'Refused' in r[3]
    except Exception as e: refused = 'size' in str(e).lower() or 'large' in str(e).lower() or '413' in str(e)
    assert refused


def test_volume_tab_segments_a_nifti_volume(model, server, tmp_path):
    "The volume endpoint: a NIfTI phantom in, the slice with most tumour shown, its mask as NIfTI on the volume's grid, the tumour in mL."
    import nibabel as nib
    from gradio_client import Client, handle_file
    from bts_nb.volumes import phantom_volumes
    from bts_nb.metrics import dice_score
    url, _ = server
    vols = phantom_volumes(tmp_path/'msd', n_patients=1, n_slices=6, size=64)
    client = Client(url, verbose=False)
    view, slider, mask_path, msg = client.predict(handle_file(str(vols/'imagesTr'/'phantom_000.nii.gz')), api_name='/volume')
    assert 'Tumour volume' in msg and 'mL' in msg and 'of 6 axial slices' in msg, msg
    img, mask = nib.load(vols/'imagesTr'/'phantom_000.nii.gz'), nib.load(mask_path)
    assert mask.shape == img.shape and np.allclose(mask.affine, img.affine)
    truth = np.asanyarray(nib.load(vols/'labelsTr'/'phantom_000.nii.gz').dataobj)
    assert dice_score(np.asanyarray(mask.dataobj), truth) > 0.5            # the phantom's tumour, in the volume's own voxel order
    assert Path(view).exists() and Path(client.predict(0, api_name='/volume_slice')).exists()   # the slider shows other slices
    try: refused = client.predict(handle_file(str(model[0]/'images'/'3.png')), api_name='/volume')[3].startswith('**Refused.** 3.png: not a NIfTI')
    except Exception as e: refused = 'Invalid file type' in str(e)              # a slice in the volume tab: refused by the page or the app
    assert refused


def test_bts_space_writes_a_space_folder(model, tmp_path):
    _, exp = model
    out = tmp_path/'space'
    r = subprocess.run([BIN/'bts_space', '--model', str(exp), '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert {'app.py', 'requirements.txt', 'README.md', 'model', 'bts_nb', 'examples'} <= {p.name for p in out.iterdir()}
    assert 'sdk: gradio' in (out/'README.md').read_text() and 'app_file: app.py' in (out/'README.md').read_text()
    r = subprocess.run([BIN/'bts_space', '--model', str(exp), '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and '--overwrite' in r.stderr
    r = subprocess.run([BIN/'bts_space', '--model', str(tmp_path), '--out', str(tmp_path/'x')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'model.safetensors' in r.stderr
    reqs = (out/'requirements.txt').read_text().split()
    import onnxruntime
    assert all('==' in q for q in reqs) and f"onnxruntime=={onnxruntime.__version__}" in reqs   # pinned to what ran here


def test_bts_space_never_deletes_what_is_not_its_own(model, tmp_path):
    _, exp = model
    space = lambda *a: subprocess.run([BIN/'bts_space', '--model', str(exp), *map(str, a)], capture_output=True, text=True, timeout=300)
    thesis = tmp_path/'thesis'; thesis.mkdir(); (thesis/'thesis.tex').write_text('years of work')
    r = space('--out', thesis, '--overwrite')
    assert r.returncode == 2 and 'holds no Space written by bts_space' in r.stderr
    assert [p.name for p in thesis.iterdir()] == ['thesis.tex']
    for out in (exp, exp/'space', exp.parent):
        before = sorted(p.name for p in exp.iterdir())
        r = space('--out', out, '--overwrite')
        assert r.returncode == 2 and 'must not be, contain or lie inside the model folder' in r.stderr, (out, r.stderr)
        assert sorted(p.name for p in exp.iterdir()) == before
    s = tmp_path/'space'
    assert space('--out', s).returncode == 0
    (s/'.git').mkdir(); (s/'.git'/'HEAD').write_text('ref: refs/heads/main')
    r = space('--out', s, '--overwrite')
    assert r.returncode == 0, r.stderr
    assert (s/'.git'/'HEAD').exists() and (s/'app.py').exists()


# the import names of TRAINING_ONLY's packages (and fastai's fasttransform): what a Space without PyTorch cannot import
NOT_IN_THE_SPACE = ('torch', 'torchvision', 'fastai', 'fasttransform', 'timm', 'segmentation_models_pytorch', 'albumentations', 'monai',
                    'einops', 'accelerate', 'onnx', 'onnxscript', 'ipywidgets')


def test_space_serves_without_pytorch(model, tmp_path):
    "A run with model.onnx gives a Space that installs no PyTorch, and its app.py serves slices and volumes with PyTorch and the rest unimportable."
    import os, time, urllib.request
    from gradio_client import Client, handle_file
    from bts_nb.app import TRAINING_ONLY
    from bts_nb.volumes import phantom_volumes
    from bts_nb.metrics import dice_score
    from browser import free_port
    data, exp = model
    out = tmp_path/'space'
    r = subprocess.run([BIN/'bts_space', '--model', str(exp), '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    reqs = {q.split('==')[0].lower() for q in (out/'requirements.txt').read_text().split()}
    assert 'onnxruntime' in reqs and 'gradio' in reqs and not reqs & set(TRAINING_ONLY), reqs
    assert (out/'model'/'model.onnx').exists() and 'without PyTorch' in (out/'README.md').read_text()
    port, log = free_port(), open(tmp_path/'space.log', 'w+')
    runner = f"import sys, runpy\nfor m in {NOT_IN_THE_SPACE!r}: sys.modules[m] = None\nrunpy.run_path('app.py', run_name='__main__')"
    proc = subprocess.Popen([sys.executable, '-c', runner], cwd=out, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, 'GRADIO_SERVER_PORT': str(port), 'GRADIO_SERVER_NAME': '127.0.0.1', 'GRADIO_ANALYTICS_ENABLED': 'False'})
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(240):
            if proc.poll() is not None: log.seek(0); pytest.fail(f"the Space's app.py exited: {log.read()[-3000:]}")
            try: urllib.request.urlopen(url, timeout=2); break
            except Exception: time.sleep(0.5)
        else: log.seek(0); pytest.fail(f"the Space did not answer in 120 s: {log.read()[-3000:]}")
        client = Client(url, verbose=False)
        files = [data/'images'/f'{n}.png' for n in range(1, 9)]
        results = [client.predict(handle_file(str(f)), 0.5, True, api_name='/segment') for f in files]
        assert all('Tumour area' in res[3] for res in results)
        truth = [np.array(Image.open(data/'masks'/f.name)) > 0 for f in files]
        masks = [np.array(Image.open(res[2])) > 0 for res in results]
        assert np.mean([dice_score(m, t) for m, t in zip(masks, truth) if t.any()]) > 0.5          # the model's real masks
        vols = phantom_volumes(tmp_path/'msd', n_patients=1, n_slices=6, size=64)
        msg = client.predict(handle_file(str(vols/'imagesTr'/'phantom_000.nii.gz')), api_name='/volume')[3]
        assert 'Tumour volume' in msg and 'mL' in msg, msg
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
