"""Shared helpers for the browser tests: a static server on 127.0.0.1 and headless Chromium through Playwright."""
import contextlib, functools, http.server, os, shutil, socket, threading
from pathlib import Path
import pytest

CHROMIUM = os.environ.get('BTS_NB_CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
# The machine has no network: without these flags Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']
ARTIFACTS = Path(os.environ.get('BTS_NB_ARTIFACTS', Path(__file__).parent.parent/'artifacts'))

if CHROMIUM is None and os.environ.get('BTS_NB_REQUIRE_BROWSER'):
    raise RuntimeError("BTS_NB_REQUIRE_BROWSER is set but no chromium was found; install Debian's chromium package")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install Debian's chromium package (.ci/run does)")

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@contextlib.contextmanager
def static_server(folder):
    "Serve `folder` on http://127.0.0.1:PORT in a thread; yields the base URL."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', free_port()), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True); t.start()
    try: yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally: httpd.shutdown(); httpd.server_close()

@contextlib.contextmanager
def browser():
    "A headless Chromium page (Playwright driving the system's Chromium; Playwright downloads no browser)."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try: yield b
        finally: b.close()


def explorer_notebook(path, model, n:int=12, side:str='valid') -> Path:
    """Write a notebook that opens both explorers on the model in `model`: `PredictionExplorer` on up to `n` slices of the
    `side` of the model's own split (slices it never trained on), and `UploadSegmenter`."""
    import nbformat
    src = f'''import warnings; warnings.filterwarnings('ignore')
import pandas as pd
from bts_nb.inference import Segmenter
from bts_nb.widgets import PredictionExplorer, UploadSegmenter
seg = Segmenter({str(model)!r}, device='cpu')
rows = pd.read_csv({str(Path(model)/'split.csv')!r})
rows = rows[rows.split == {side!r}]
rows = rows.iloc[::max(1, len(rows) // {n})][:{n}]
PredictionExplorer(seg, rows.image.tolist(), rows['mask'].tolist())'''
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src), nbformat.v4.new_code_cell('UploadSegmenter(seg)')])
    nb.metadata['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    nbformat.write(nb, str(path))
    return Path(path)

@contextlib.contextmanager
def voila(notebook, timeout:float=120):
    "Serve `notebook` with Voilà (its widgets as a web page, with a live kernel) on 127.0.0.1; yields (URL, log file)."
    import subprocess, sys, time
    notebook, port = Path(notebook), free_port()
    log = open(notebook.with_suffix('.voila.log'), 'w+')
    proc = subprocess.Popen([sys.executable, '-m', 'voila', notebook.name, '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1', '--show_tracebacks=True'],
                            cwd=notebook.parent, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(int(timeout * 4)):
            if proc.poll() is not None: log.seek(0); raise RuntimeError(f"voila exited: {log.read()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(('127.0.0.1', port)) == 0: break
            time.sleep(0.25)
        else: raise RuntimeError(f"voila did not listen on port {port} in {timeout} s")
        yield f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill()

@contextlib.contextmanager
def app_server(model, *options, log_path, timeout:float=120):
    "Serve the Gradio app (`bts_app --model model *options`) on 127.0.0.1; yields (URL, log file) once it answers."
    import subprocess, sys, time, os, urllib.request
    port, log = free_port(), open(log_path, 'w+')
    proc = subprocess.Popen([Path(sys.executable).parent/'bts_app', '--model', str(model), '--port', str(port), *map(str, options)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, 'GRADIO_ANALYTICS_ENABLED': 'False'})
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(int(timeout * 2)):
            if proc.poll() is not None: log.seek(0); raise RuntimeError(f"bts_app exited: {log.read()[-3000:]}")
            try: urllib.request.urlopen(url, timeout=2); break
            except Exception: time.sleep(0.5)
        else: log.seek(0); raise RuntimeError(f"bts_app did not answer in {timeout} s: {log.read()[-3000:]}")
        yield url, log
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()

def settled_text(page, selector:str, quiet_s:float=1.5, timeout:float=60) -> str:
    "The text of `selector` once it has not changed for `quiet_s` seconds (widgets update in steps as a slider moves)."
    import time
    last, since, start = None, time.time(), time.time()
    while time.time() - start < timeout:
        t = page.locator(selector).inner_text()
        if t != last: last, since = t, time.time()
        elif time.time() - since >= quiet_s: return t
        time.sleep(0.2)
    raise TimeoutError(f"{selector} kept changing for {timeout} s")
