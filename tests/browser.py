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
