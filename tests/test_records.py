"""Every figure in the README's results sections comes from a record under bench/results/ that its section cites.

A "figure" is a number with a decimal point (Dice, HD95, minutes, images/s, GB, %). A section is a `##` or `###`
heading with its text; its records are the `bench/results/...` files and folders it names (a folder: its summary
files, not the per-image tables). A figure is found when a number in those records rounds to it at the figure's own
precision, directly, as a percentage of a fraction, or as GB of MB. Targets and thresholds that are not measurements
are listed in `NOT_MEASURED`; derived figures (differences, ratios) are not allowed: write their operands instead.
"""
import re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT/'README.md'
CITE = re.compile(r'bench/results/[\w./-]*[\w/]')
FIGURE = re.compile(r'(?<![\w.])[-−+]?\d+\.\d+(?![\w.]*\d)')
RECORD_NUMBER = re.compile(r'-?\d+(?:\.\d+)?(?:e-?\d+)?')
# the targets and fixed thresholds, stated beside the measurements, and the upstream's reported figure
NOT_MEASURED = {'0.80', '0.82', '0.84', '0.88', '0.1', '0.79', '0.5'}


def results_sections(text: str) -> list[str]:
    "The README's results text, from '## Results on real data' up to '## Chapters', cut at its headings; code blocks removed."
    start, end = text.index('## Results on real data'), text.index('## Chapters')
    body = re.sub(r'```.*?```', '', text[start:end], flags=re.S)
    return re.split(r'\n(?=##)', body)


def record_numbers(path: Path) -> set[float]:
    files = [path] if path.is_file() else sorted(f for f in path.rglob('*') if f.is_file())
    out = set()
    for f in files:
        if f.suffix not in ('.csv', '.json', '.yaml') or f.name.startswith('per_image'): continue
        out.update(float(m) for m in RECORD_NUMBER.findall(f.read_text()))
    return out


def is_found(figure: str, pool: set[float]) -> bool:
    decimals = len(figure.split('.')[1])
    x, tol = abs(float(figure.replace('−', '-'))), 0.5 * 10 ** -decimals + 1e-9
    return any(abs(v - x) <= tol for r in pool for v in (r, r * 100, r / 1024))


def unfound_figures(text: str) -> list[str]:
    "Figures of the results sections that no record cited in their section holds, each with its context."
    missing = []
    for section in results_sections(text):
        cited = set(CITE.findall(section))
        for c in cited: assert (ROOT/c).exists(), f"README cites {c}, which does not exist"
        pool = set().union(*(record_numbers(ROOT/c) for c in cited)) if cited else set()
        for m in FIGURE.finditer(section):
            if m.group().lstrip('+-−') in NOT_MEASURED or is_found(m.group(), pool): continue
            heading = section.splitlines()[0]
            missing.append(f"{m.group()} in '{heading}': …{section[max(0, m.start() - 60):m.end() + 15]}…".replace('\n', ' '))
    return missing


def test_every_results_figure_is_in_a_cited_record():
    missing = unfound_figures(README.read_text())
    assert not missing, "figures with no record cited in their section:\n" + '\n'.join(missing)


def test_the_check_catches_a_figure_with_no_record():
    text = README.read_text()
    assert not unfound_figures(text)
    start, end = text.index('## Results on real data'), text.index('## Chapters')
    code = ''.join(re.findall(r'```.*?```', text[start:end], flags=re.S))
    figure = next(m.group() for m in FIGURE.finditer(results_sections(text)[0]) if m.group() not in NOT_MEASURED and m.group() not in code)
    k = text.index(figure, start)
    wrong = text[:k] + '0.987654' + text[k + len(figure):]
    assert any('0.987654' in line for line in unfound_figures(wrong))
    uncited = text[:start] + CITE.sub('somewhere', text[start:end]) + text[end:]
    assert unfound_figures(uncited), "without their citations the results' figures must be unfound"


@pytest.mark.parametrize('figure,pool,found', [('0.669', {0.6686}, True), ('0.669', {0.6676}, False), ('12.7', {0.127}, True),
                                               ('1.9', {1940.0}, True), ('29.5', {29.54}, True), ('29.5', {29.56}, False)])
def test_rounding_rules(figure, pool, found):
    assert is_found(figure, pool) is found
