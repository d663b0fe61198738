"""The installed package as a new user meets it: every module imports in a fresh interpreter (no notebook cell
to hide a missing import), and every console script answers --help."""
import pkgutil, subprocess, sys
from importlib.metadata import entry_points
import pytest
import bts_nb

MODULES = sorted(m.name for m in pkgutil.iter_modules(bts_nb.__path__) if not m.name.startswith('_'))
SCRIPTS = sorted(e.name for e in entry_points(group='console_scripts') if e.value.startswith('bts_nb.'))


def test_every_module_and_script_is_found():
    assert {'data', 'train', 'inference', 'widgets', 'app'} <= set(MODULES)
    assert {'bts_train', 'bts_predict', 'bts_evaluate', 'bts_space', 'bts_app', 'bts_figures', 'bts_readme', 'bts_docs', 'bts_leakcheck'} <= set(SCRIPTS)


@pytest.mark.parametrize('module', MODULES)
def test_module_imports_in_a_fresh_interpreter(module, tmp_path):
    code = f"import bts_nb.{module} as m; missing = [n for n in getattr(m, '__all__', []) if not hasattr(m, n)]; assert not missing, missing"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize('script', SCRIPTS)
def test_console_script_help(script, tmp_path):
    r = subprocess.run([str(__import__('pathlib').Path(sys.executable).parent/script), '--help'], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'usage:' in r.stdout and '--' in r.stdout
