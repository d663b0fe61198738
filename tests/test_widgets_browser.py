"""The ipywidgets explorers in a real notebook front end: Voilà renders a notebook that opens `PredictionExplorer` and
`UploadSegmenter` on a trained phantom model, and headless Chromium drives them as a user would."""
import re
import pytest
from browser import ARTIFACTS, browser, explorer_notebook, needs_chromium, settled_text, voila

pytest.importorskip('voila', reason="Voilà is a dev requirement: pip install -e '.[dev]'")

MEAN_DICE = re.compile(r'mean Dice of all (\d+): ([0-9.]+)')


@needs_chromium
def test_explorers_in_voila(learned, tmp_path):
    data, exp = learned
    nb = explorer_notebook(tmp_path/'explorers.ipynb', exp)
    with voila(nb) as (url, log), browser() as b:
        page = b.new_page(viewport={'width': 1100, 'height': 1000})
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.goto(url, wait_until='load', timeout=180000)
        try: page.wait_for_function("() => (document.querySelector('.bts-explorer-info') || {innerText: ''}).innerText.includes('Dice')",
                                    timeout=180000)
        except Exception:
            log.seek(0); pytest.fail(f"the explorer did not show: {page.inner_text('body')[-2000:]}\n{log.read()[-3000:]}")
        info = '.bts-explorer-info'
        first = settled_text(page, info)
        n, dice0 = MEAN_DICE.search(first).groups()
        assert int(n) == 12
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS/'explorer.png'), full_page=True)

        # the threshold slider, moved with the keyboard as a user can: 0.50 -> 0.95 changes the masks and so the Dice shown
        page.locator('.bts-explorer-threshold .noUi-handle').focus()
        for _ in range(9): page.keyboard.press('ArrowRight')
        page.wait_for_function("() => document.querySelector('.bts-explorer-threshold .widget-readout').innerText == '0.95'")
        moved = settled_text(page, info)
        assert MEAN_DICE.search(moved).group(2) != dice0, (first, moved)

        # next: the second case of the worst-first list
        case = page.locator('.bts-explorer-case select')
        before = case.input_value()
        page.locator('.bts-explorer-next').click()
        page.wait_for_function("t => document.querySelector('.bts-explorer-info').innerText != t", arg=moved, timeout=30000)
        assert case.input_value() != before
        assert settled_text(page, info).split(':')[0] in case.input_value()        # the info names the case now selected

        # the error map redraws the image
        src = page.locator('.bts-explorer-image').get_attribute('src')
        page.locator('.bts-explorer-errors input').click()
        page.wait_for_function("s => document.querySelector('.bts-explorer-image').src != s", arg=src, timeout=30000)
        page.screenshot(path=str(ARTIFACTS/'explorer_errors.png'), full_page=True)

        # an upload through the browser's file chooser is segmented in the kernel and shown
        with page.expect_file_chooser() as chooser: page.locator('.bts-upload-upload').click()
        chooser.value.set_files(str(data/'images'/'3.png'))
        page.wait_for_function("() => document.querySelector('.bts-upload-info').innerText.includes('tumour area')", timeout=60000)
        assert '3.png' in page.locator('.bts-upload-info').inner_text()
        assert page.locator('.bts-upload-image').get_attribute('src')
        page.locator('.bts-upload-image').scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS/'explorer_upload.png'), full_page=True)
        assert not errors, errors
    log.seek(0)
    assert 'Traceback' not in log.read()
