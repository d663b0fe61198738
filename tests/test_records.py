"""Every figure in the README's results sections comes from a record under bench/results/ that its section cites.

A "figure" is a number with a decimal point (Dice, HD95, minutes, images/s, GB, %). A section is a `##` or `###`
heading with its text; its records are the `bench/results/...` files and folders it names. A folder stands for its
summary files: not the per-image tables, the per-epoch logs (metrics.csv) or the lists of slices, groups and folds,
whose thousands of numbers would match almost any figure; a section that quotes such a file cites the file itself.
A figure is found when a number in those records rounds to it at the figure's own precision: directly, or, for a
figure written as a percentage (`%`) or in GB, as the percentage of a fraction or the GB of a number of MB.
A table row reports one thing (a run, a fold, a setting), so its figures must all come from one place: one row of a
cited summary table, one record file, or one record folder, or a folder joined with the summary-table row that names
it (a row whose name is part of the folder's). Targets and thresholds that are not measurements are listed in `NOT_MEASURED`; derived figures (differences,
ratios) are not allowed: write their operands instead.
"""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT/'README.md'
CITE = re.compile(r'bench/results/[\w./-]*[\w/]')
FIGURE = re.compile(r'(?<![\w.])[-−+]?\d+\.\d+(?![\w.]*\d)')
UNIT = re.compile(r'\s?(%|GB)')            # right after a figure: the unit that allows a conversion
RECORD_NUMBER = re.compile(r'-?\d+(?:\.\d+)?(?:e-?\d+)?')
# the targets and fixed thresholds, stated beside the measurements, and the upstream's reported figure
NOT_MEASURED = {'0.80', '0.82', '0.84', '0.88', '0.1', '0.79', '0.5'}


def results_sections(text: str) -> list[str]:
    "The README's results text, from '## Results on real data' up to '## Chapters', cut at its headings; code blocks removed."
    start, end = text.index('## Results on real data'), text.index('## Chapters')
    body = re.sub(r'```.*?```', '', text[start:end], flags=re.S)
    return re.split(r'\n(?=##)', body)


# per-item tables inside a record folder: read only when a section cites the file itself
NOT_SUMMARIES = {'metrics.csv', 'folds.csv', 'split.csv', 'split_groups.csv', 'split_blocks.csv', 'split_numbers.csv', 'leaks.csv'}


def is_summary(f: Path) -> bool:
    return f.suffix in ('.csv', '.json', '.yaml') and not f.name.startswith('per_image') and f.name not in NOT_SUMMARIES


def record_numbers(path: Path) -> set[float]:
    files = [path] if path.is_file() else sorted(f for f in path.rglob('*') if f.is_file() and is_summary(f))
    out = set()
    for f in files: out.update(float(m) for m in RECORD_NUMBER.findall(f.read_text()))
    return out


def is_found(figure: str, pool: set[float], unit: str = '') -> bool:
    """Does a number of `pool` round to `figure`? With unit '%' a fraction may (x100), with 'GB' a number of MB may (/1024).
    A signed figure ('-0.0058') must match the record's sign; an unsigned one may stand for a negative record ('lowers it by 0.0058')."""
    decimals = len(figure.split('.')[1])
    x, tol = float(figure.replace('−', '-')), 0.5 * 10 ** -decimals + 1e-9
    signed = figure[0] in '-−+'
    convert = {'%': lambda r: r * 100, 'GB': lambda r: r / 1024}.get(unit, lambda r: r)
    return any(abs((v if signed else abs(v)) - x) <= tol for r in pool for v in (r, convert(r)))


def unit_after(text: str, end: int) -> str:
    m = UNIT.match(text, end)
    return m.group(1) if m else ''


def numbers_in(text: str) -> set[float]: return {float(m) for m in RECORD_NUMBER.findall(text)}


def json_units(f: Path) -> list[tuple[str, set[float], bool]]:
    "A JSON record's units: what lies outside its lists of objects (per fold, per patient), and each i-th entry of those lists."
    data = json.loads(f.read_text())
    if not isinstance(data, dict): return [(f.name, numbers_in(f.read_text()), False)]
    lists = {k: v for k, v in data.items() if isinstance(v, list) and v and all(isinstance(e, dict) for e in v)}
    rest = {k: v for k, v in data.items() if k not in lists}
    units = [(f.name, numbers_in(json.dumps(rest)), False)]
    for n in {len(v) for v in lists.values()}:               # parallel lists (per_fold, valid_per_fold): their i-th entries together
        same = [v for v in lists.values() if len(v) == n]
        units += [(f'{f.name}[{i}]', numbers_in(json.dumps([v[i] for v in same])), False) for i in range(n)]
    return units


def record_units(path: Path) -> list[tuple[str, set[float], bool]]:
    """What one table row may come from, as (name, numbers, is_folder): each row of a summary CSV (and its rows that share
    their first field, one run on several test sets), each JSON or YAML record (each entry of its per-fold lists apart),
    and each folder's own JSON and YAML records together (a run, or one fold of a CV)."""
    files = [path] if path.is_file() else sorted(f for f in path.rglob('*') if f.is_file() and is_summary(f))
    units, folders = [], {}
    for f in files:
        text = f.read_text()
        if f.suffix == '.csv':
            rows = text.splitlines()[1:]
            units += [(line, numbers_in(line), False) for line in rows]
            for first in {r.split(',')[0] for r in rows}:            # the rows of one subject (a run on several test sets) together
                same = [r for r in rows if r.split(',')[0] == first]
                if len(same) > 1: units.append(('\n'.join(same), numbers_in('\n'.join(same)), False))
        elif f.suffix == '.json': units += json_units(f)
        else: units.append((f.name, numbers_in(text), False))
        if f.suffix != '.csv' and f.name != 'cv_summary.json':     # (a CV's summary spans its folds)
            folders.setdefault(f.parent, set()).update(numbers_in(text))
    return units + [(d.name, numbers, True) for d, numbers in folders.items()]


def names_folder(row: str, folder: str) -> bool:
    "Does a summary-table row name this record folder (one of its text fields is part of the folder's name)?"
    return any(len(field) >= 6 and field in folder for field in row.split(',') if not RECORD_NUMBER.fullmatch(field))


def table_rows_from_two_places(section: str, units: list) -> list[str]:
    "The table rows of a section whose figures no single unit holds (nor a folder joined with the row that names it)."
    bad = []
    for line in section.splitlines():
        figures = [(m.group(), unit_after(line, m.end())) for m in FIGURE.finditer(line) if line.startswith('|')
                   and m.group().lstrip('+-−') not in NOT_MEASURED]
        if not figures: continue
        covers = [frozenset(i for i, (f, u) in enumerate(figures) if is_found(f, numbers, u)) for _, numbers, _ in units]
        every = frozenset(range(len(figures)))
        if any(c == every for c in covers): continue
        folders = [(units[k][0], c) for k, c in enumerate(covers) if units[k][2] and c]
        rows = [(units[k][0], c) for k, c in enumerate(covers) if not units[k][2] and ',' in units[k][0] and c]
        if any(fc | rc == every and names_folder(row, folder) for folder, fc in folders for row, rc in rows): continue
        bad.append(line)
    return bad


def unfound_figures(text: str) -> list[str]:
    "Figures of the results sections that no record cited in their section holds, each with its context."
    missing = []
    for section in results_sections(text):
        cited = set(CITE.findall(section))
        for c in cited: assert (ROOT/c).exists(), f"README cites {c}, which does not exist"
        pool = set().union(*(record_numbers(ROOT/c) for c in cited)) if cited else set()
        for m in FIGURE.finditer(section):
            if m.group().lstrip('+-−') in NOT_MEASURED or is_found(m.group(), pool, unit_after(section, m.end())): continue
            heading = section.splitlines()[0]
            missing.append(f"{m.group()} in '{heading}': …{section[max(0, m.start() - 60):m.end() + 15]}…".replace('\n', ' '))
        units = [u for c in cited for u in record_units(ROOT/c)]
        missing += [f"a row of '{section.splitlines()[0]}' with figures from several records: {row}"
                    for row in table_rows_from_two_places(section, units)]
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


@pytest.mark.parametrize('figure,pool,unit,found', [('0.669', {0.6686}, '', True), ('0.669', {0.6676}, '', False),
                                                    ('12.7', {0.127}, '%', True), ('12.7', {0.127}, '', False),
                                                    ('1.9', {1940.0}, 'GB', True), ('0.754', {772.0}, '', False),
                                                    ('29.5', {29.54}, '', True), ('29.5', {29.56}, '', False),
                                                    ('-0.0058', {-0.0058}, '', True), ('0.0058', {-0.0058}, '', True), ('-0.0058', {0.0058}, '', False)])
def test_rounding_rules(figure, pool, unit, found):
    assert is_found(figure, pool, unit) is found


def test_units_are_read_after_the_figure():
    text = 'missed 7.0 % of slices, peak 1.9 GB, Dice 0.754.'
    assert [unit_after(text, m.end()) for m in FIGURE.finditer(text)] == ['%', 'GB', '']


def test_a_folder_stands_for_its_summaries_not_its_logs(tmp_path):
    (tmp_path/'run').mkdir()
    (tmp_path/'run'/'eval.json').write_text('{"dice": 0.7312}')
    (tmp_path/'run'/'metrics.csv').write_text('epoch,dice\n0,0.6123\n')
    (tmp_path/'run'/'per_image_test.csv').write_text('image,dice\nimages/1.png,0.4444\n')
    assert record_numbers(tmp_path) == {0.7312}
    assert 0.6123 in record_numbers(tmp_path/'run'/'metrics.csv')            # cited by name, a log counts


def test_the_check_catches_figures_swapped_between_table_rows():
    "Each figure still in the records, but in the wrong row: the headline table's Figshare and LGG global Dice exchanged."
    text = README.read_text()
    row0 = next(line for line in text.splitlines() if line.startswith('| Figshare, '))
    row1 = next(line for line in text.splitlines() if line.startswith('| LGG, '))
    d0, d1 = row0.split(' | ')[4], row1.split(' | ')[4]
    assert d0 != d1 and d0 in FIGURE.findall(row0)
    swapped = text.replace(row0, row0.replace(f' | {d0} | ', f' | {d1} | ', 1)).replace(row1, row1.replace(f' | {d1} | ', f' | {d0} | ', 1))
    assert swapped != text and not any(d0 in m or d1 in m for m in unfound_figures(text))
    assert sum('with figures from several records' in m for m in unfound_figures(swapped)) == 2


def csv_shape_errors(folder: Path) -> list[str]:
    "Rows of the CSV files under `folder` whose number of fields differs from their header's (e.g. a comma left unquoted by a hand edit)."
    import csv
    bad = []
    for f in sorted(folder.rglob('*.csv')):
        with f.open(newline='') as fh: rows = list(csv.reader(fh))
        bad += [f'{f}:{i + 1}: {len(r)} fields, the header has {len(rows[0])}' for i, r in enumerate(rows) if r and len(r) != len(rows[0])]
    return bad


def test_every_csv_record_is_a_table(tmp_path):
    assert not csv_shape_errors(ROOT/'bench'/'results')
    (tmp_path/'recipes.csv').write_text('name,split,dice\nlite1,"blocks, seed 42",0.7\nlite2,blocks, seed 42,0.7\n')
    assert csv_shape_errors(tmp_path) == [f'{tmp_path}/recipes.csv:3: 4 fields, the header has 3']
