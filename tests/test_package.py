"""The installed package as a new user meets it: every module imports in a fresh interpreter (no notebook cell
to hide a missing import), and every console script answers --help.

One fresh interpreter checks all modules, and one all scripts: each start pays about 10 s of torch and fastai imports
on a 2-core CPU, and Python modules share no names, so importing them one after another hides no missing import."""
import json, pkgutil, statistics, subprocess, sys
from pathlib import Path
from importlib.metadata import entry_points
import bts_nb
from conftest import BIN
import pytest

pytestmark = pytest.mark.quick

MODULES = sorted(m.name for m in pkgutil.iter_modules(bts_nb.__path__) if not m.name.startswith('_'))
SCRIPTS = sorted(e.name for e in entry_points(group='console_scripts') if e.value.startswith('bts_nb.'))


def test_every_module_and_script_is_found():
    assert {'data', 'train', 'inference', 'widgets', 'app'} <= set(MODULES)
    assert {'bts_train', 'bts_predict', 'bts_evaluate', 'bts_space', 'bts_app', 'bts_figures', 'bts_readme', 'bts_docs', 'bts_leakcheck'} <= set(SCRIPTS)
    assert all((BIN/s).is_file() for s in SCRIPTS), [s for s in SCRIPTS if not (BIN/s).is_file()]   # installed beside this Python


IMPORT_EACH = """
import importlib, json, sys, traceback
failed = {}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(f'bts_nb.{name}')
        missing = [n for n in getattr(m, '__all__', []) if not hasattr(m, n)]
        if missing: failed[name] = f'__all__ names not defined: {missing}'
    except Exception: failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""


def test_every_module_imports_in_a_fresh_interpreter(tmp_path):
    r = subprocess.run([sys.executable, '-c', IMPORT_EACH, *MODULES], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    failed = json.loads(r.stdout.strip().splitlines()[-1])
    assert failed == {}, '\n'.join(f'bts_nb.{k}: {v}' for k, v in failed.items())


HELP_EACH = """
import contextlib, io, json, sys
from importlib.metadata import entry_points
scripts = {e.name: e for e in entry_points(group='console_scripts')}
out = {}
for name in sys.argv[1:]:
    buf, code = io.StringIO(), None
    sys.argv = [name, '--help']                       # what the installed wrapper passes: the script's name, then the options
    with contextlib.redirect_stdout(buf):
        try: scripts[name].load()()
        except SystemExit as e: code = e.code
    out[name] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def test_every_console_script_answers_help(tmp_path):
    "Each script's entry point, loaded the way its wrapper in bin/ loads it, prints its usage and exits 0."
    (tmp_path/'help_each.py').write_text(HELP_EACH)        # a file, not -c: fastcore's call_parse reads sys.argv only for a caller in a module
    r = subprocess.run([sys.executable, 'help_each.py', *SCRIPTS], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    bad = {s: v for s, v in res.items() if v[0] not in (0, None) or 'usage:' not in v[1] or '--' not in v[1]}
    assert set(res) == set(SCRIPTS) and not bad, bad


def test_an_installed_wrapper_runs():
    "One script through its file in bin/, as a shell runs it."
    r = subprocess.run([str(BIN/'bts_train'), '--help'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'usage:' in r.stdout and '--pretrained' in r.stdout, r.stderr[-2000:]


def exported_cell_lengths() -> list[int]:
    "Non-blank lines of every exported notebook cell, its `#| export` line aside."
    nbs = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('*.ipynb'))
    cells = [''.join(c['source']) for p in nbs for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code']
    return [sum(1 for line in s.splitlines() if line.strip()) - 1 for s in cells if s.startswith('#| export')]


def test_exported_cells_keep_fastais_rhythm():
    "One function or class per exported cell, shown and tested after it: cells stay short enough to read as a chapter."
    lengths = exported_cell_lengths()
    assert len(lengths) > 100 and statistics.median(lengths) <= 15, statistics.median(lengths)
    assert max(lengths) <= 40, sorted(lengths)[-5:]
