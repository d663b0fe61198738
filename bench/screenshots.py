"""The README's screenshots: the ipywidgets explorers in Voilà and the web app, on a trained model and its own held-out slices.

    python bench/screenshots.py --model runs/fig_lite0_smp [--out imgs]

Needs Chromium, Voilà and Gradio (the dev requirements) and the model's data at the paths in its split.csv. Writes
`explorer.png` (PredictionExplorer on 12 test slices, worst first, error map on) and `app.png` (the app after segmenting
the first example) into --out. Only pictures: no figure in them is quoted in the README.
"""
import argparse, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent.parent/'tests'))
from browser import app_server, browser, explorer_notebook, settled_text, voila   # noqa: E402


def explorer_shot(model, out:Path, work:Path):
    nb = explorer_notebook(work/'explorer.ipynb', Path(model).resolve(), n=12, side='test')
    with voila(nb) as (url, log), browser() as b:
        page = b.new_page(viewport={'width': 900, 'height': 860})
        page.goto(url, wait_until='load', timeout=300000)
        page.wait_for_function("() => (document.querySelector('.bts-explorer-info') || {innerText: ''}).innerText.includes('Dice')", timeout=300000)
        page.locator('.bts-explorer-errors input').click()
        settled_text(page, '.bts-explorer-info')
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out/'explorer.png'))


def app_shot(model, out:Path, work:Path):
    with app_server(model, log_path=work/'app.log') as (url, _), browser() as b:
        page = b.new_page(viewport={'width': 1280, 'height': 1100})
        page.goto(url, wait_until='load')
        page.locator('#examples button.gallery-item').nth(1).click()
        page.wait_for_function("() => document.querySelector('#message').innerText.includes('Tumour area')", timeout=120000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out/'app.png'), full_page=True)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', required=True); ap.add_argument('--out', default='imgs')
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(exist_ok=True)
    import tempfile
    work = Path(tempfile.mkdtemp())
    explorer_shot(a.model, out, work)
    app_shot(a.model, out, work)
    print(f"written: {out/'explorer.png'}, {out/'app.png'}")
