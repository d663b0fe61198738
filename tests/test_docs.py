"""The documentation site: built from the notebooks with `bts_docs`, served on 127.0.0.1, read in headless Chromium."""
import re, subprocess, sys
from pathlib import Path
from urllib.parse import urljoin
import pytest
from browser import ARTIFACTS, browser, needs_chromium, static_server

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb'))

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    r = subprocess.run([str(Path(sys.executable).parent/'bts_docs'), '--out', str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out

def test_one_page_per_notebook(site):
    pages = {p.name for p in site.glob('*.html')} - {'404.html'}
    assert len(pages) == len(NOTEBOOKS), (sorted(pages), [p.name for p in NOTEBOOKS])
    assert 'index.html' in pages and (site/'search'/'search_index.json').exists()
    home = (site/'index.html').read_text()
    assert 'fonts.googleapis' not in home, "the site must not need the network"

@needs_chromium
def test_site_in_headless_chromium(site):
    with static_server(site) as base, browser() as b:
        page = b.new_page(viewport={'width': 1280, 'height': 900})
        failed = []
        page.on('requestfailed', lambda r: failed.append(f'{r.failure} {r.url}'))
        page.on('response', lambda r: failed.append(f'{r.status} {r.url}') if r.status >= 400 else None)
        # 'networkidle', not 'load': the theme's search worker loads after the page; leaving the page earlier aborts its request
        page.goto(base + '/index.html', wait_until='networkidle')
        assert 'bts_nb' in page.title()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS/'docs_home.png'), full_page=False)
        # the sidebar: every link resolves to a page that loads, with a heading and no failed request
        links = page.eval_on_selector_all('nav.md-nav--primary a.md-nav__link[href]', 'els => els.map(e => e.getAttribute("href"))')
        links = sorted({urljoin(base + '/index.html', l).split('#')[0] for l in links if l.endswith('.html') or '.html#' in l})
        assert len(links) >= len(NOTEBOOKS) - 1, links
        api_entries, figures = 0, 0
        for url in links:
            resp = page.goto(url, wait_until='networkidle')
            assert resp.status == 200, url
            assert page.locator('article h1').count() == 1, url
            # API entries: show_doc's heading + signature block
            api_entries += page.locator('article h3 + div.highlight').count()
            figures += page.evaluate("""() => [...document.querySelectorAll('article img')]
                                              .filter(i => i.complete && i.naturalWidth > 0).length""")
        assert api_entries > 20, api_entries
        assert figures >= 5, figures
        assert not failed, failed[:10]
        # search works offline: type a function name, get a result
        page.goto(base + '/index.html', wait_until='networkidle')
        page.locator('input.md-search__input').click()
        page.keyboard.type('hausdorff', delay=20)
        page.wait_for_selector('.md-search-result__item', timeout=15000)
        assert page.locator('.md-search-result__item').count() >= 1
        assert 'metrics.html' in page.locator('.md-search-result__item a').first.get_attribute('href')

MACHINE_PATH = re.compile(r'/tmp/|/root/|/home/|/work/|site-packages|\.\./\.\./shared|btscache')

@needs_chromium
def test_pages_as_read_show_no_bare_entry_and_no_machine_path(site):
    "What a reader sees in the browser, page by page: no API entry reading 'Call self as a function.', no path of the build machine."
    found = []
    with static_server(site) as base, browser() as b:
        page = b.new_page(viewport={'width': 1280, 'height': 900})
        for p in sorted(site.glob('*.html')):
            page.goto(urljoin(base + '/', p.name), wait_until='load')
            text = page.inner_text('article')
            found += [(p.name, 'Call self as a function.')] if 'Call self as a function.' in text else []
            found += [(p.name, text[max(m.start() - 40, 0):m.end() + 40]) for m in MACHINE_PATH.finditer(text)]
    assert not found, found

def test_no_api_entry_without_a_description(site):
    "nbdev's show_doc writes 'Call self as a function.' for a function without a docstring: every exported entry has its own."
    bare = [p.name for p in site.glob('*.html') if 'Call self as a function.' in p.read_text()]
    assert not bare, f"pages with undocumented API entries: {bare}"

def test_bts_docs_outside_a_checkout_says_so_in_one_line(tmp_path):
    r = subprocess.run([str(Path(sys.executable).parent/'bts_docs'), '--out', str(tmp_path/'site')], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'settings.ini' in r.stderr and not (tmp_path/'site').exists()

def test_classes_are_shown_as_classes(site):
    "fastcore's show_doc writes `def` before every signature; the site says `class` for classes and keeps `def` for functions."
    import re
    text = lambda page: re.sub(r'<[^>]+>', '', (site/page).read_text()).replace('\n', ' ')
    assert 'class DataError(' in text('readers.html') and 'def DataError(' not in text('readers.html')
    assert 'class TrainConfig(' in text('runs.html') and 'def train_speed(' in text('train.html')

def test_source_links_point_at_the_notebooks(site):
    "The notebooks are the source: an entry's [source] link opens the notebook it is exported from, on the repository of settings.ini."
    import re
    links = {h for p in site.glob('*.html') for h in re.findall(r'href="(https://github\.com/[^"]+)"', p.read_text())}
    assert any(h.startswith('https://github.com/bts-nb/bts_nb/blob/main/nbs/') for h in links)
    assert not [h for h in links if re.search(r'/bts_nb/\w+\.py', h)], "links to generated modules"
