"""Two recipes compared on the same patient-wise folds: each slice scored out of fold by both, then paired.

Each side is a recorded `bts_train --folds 5` folder under bench/results (see bench/figshare_cv.py and
bench/lgg_channels.py for recording one). The two must hold the same folds, slice for slice, or the script stops.

    python bench/compare_cv.py --base bench/results/fig_cv5_lite0 --new bench/results/fig_cv5_ft --name finetune_figshare
    python bench/compare_cv.py --base bench/results/lgg_cv5_rgb --new bench/results/lgg_cv5_ft --name finetune_lgg
    python bench/compare_cv.py --name finetune_figshare --markdown       # the results page's table, from the record

Writes bench/results/<name>.csv (each fold and the pooled out-of-fold figures, both sides), <name>_groups.csv (each
patient, or block of the numbering where patients are not named: its Dice under both) and <name>.json (the paired
comparison). Slices of one patient are not independent, so the paired test that decides is the one over groups
(Wilcoxon signed-rank over patients or blocks); the test over slices is given beside it and overstates the evidence."""
import argparse, dataclasses, json, os
from pathlib import Path
import pandas as pd, yaml
from scipy.stats import wilcoxon

RESULTS = Path(__file__).parent/'results'


def with_groups(t:pd.DataFrame, cv:Path) -> pd.DataFrame:
    "Per-slice table `t` of the cross-validation `cv` with the group (patient or block) each slice belongs to."
    folds = pd.read_csv(cv/'folds.csv')
    folds['name'] = folds.image.map(lambda p: Path(p).name)
    if folds.name.duplicated().any(): raise SystemExit(f"{cv}/folds.csv: file names repeat; cannot pair slices by name")
    return t.merge(folds[['name', 'group']], on='name', how='left', validate='one_to_one')


def load(cv:Path) -> pd.DataFrame:
    "`cv`'s out-of-fold slices with the group (patient or block) each belongs to."
    return with_groups(pd.read_csv(cv/'per_image_oof.csv'), cv)


def check_paired(a:Path, b:Path, ta:pd.DataFrame, tb:pd.DataFrame):
    "Stop unless both records hold the same folds and score the same slices."
    fa, fb = (pd.read_csv(d/'folds.csv')[['image', 'group', 'fold']] for d in (a, b))
    if not fa.equals(fb): raise SystemExit(f"{a} and {b} do not hold the same folds: not a paired comparison")
    if set(zip(ta.name, ta.fold)) != set(zip(tb.name, tb.fold)): raise SystemExit(f"{a} and {b} score different slices")


def has_patients(t:pd.DataFrame) -> bool: return 'patient' in t and t.patient.notna().any()


def figures(t:pd.DataFrame) -> dict:
    "bts_nb's reported figures of a per-slice table (`summarize_metrics`), with the slices under Dice 0.1 and how many of those are empty predictions."
    from bts_nb.metrics import summarize_metrics
    low = t.dice < 0.1
    return summarize_metrics(t) | dict(frac_dice_lt_0_1=low.mean(), n_dice_lt_0_1=int(low.sum()),
                                       n_empty_misses=int((low & (t.gt_px > 0) & (t.pred_px == 0)).sum()))


def group_dice(t:pd.DataFrame) -> pd.Series:
    "Each group's score: volumetric Dice for named patients, else the mean per-slice Dice of its block."
    if has_patients(t):
        from bts_nb.metrics import patient_dice
        return patient_dice(t).set_index('patient').dice
    return t.groupby('group').dice.mean()


def paired(x:pd.Series, y:pd.Series) -> dict:
    "Better / worse counts, mean and median change, and the Wilcoxon signed-rank test of `y` against `x` (same index)."
    d = (y - x).dropna()
    test = wilcoxon(d) if (d != 0).any() else None
    return dict(n=len(d), better=int((d > 0).sum()), worse=int((d < 0).sum()), same=int((d == 0).sum()),
                mean_change=float(d.mean()), median_change=float(d.median()),
                wilcoxon_statistic=float(test.statistic) if test else None, wilcoxon_p=float(test.pvalue) if test else None)


def recipe_difference(a:Path, b:Path) -> dict:
    "The config keys (of fold 0) in which the two recipes differ, as {key: [base, new]}."
    from bts_nb.runs import TrainConfig
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}    # an option added since a record ran at its default
    x, y = ({**defaults, **yaml.safe_load((d/'config.yaml').read_text())} for d in (a, b))
    return {k: [x.get(k), y.get(k)] for k in sorted(set(x) | set(y)) if k not in ('data', 'split') and x.get(k) != y.get(k)}


def compare(base:Path, new:Path, name:str, out:Path=RESULTS) -> dict:
    ta, tb = load(base), load(new)
    check_paired(base, new, ta, tb)
    rows = []
    for side, d, t in (('base', base, ta), ('new', new, tb)):
        for i in sorted(t.fold.unique()):
            card, m = json.loads((d/f'fold_{i}'/'model_card.json').read_text()), d/f'fold_{i}'/'machine.json'
            cpu = json.loads(m.read_text()) if m.exists() else {}
            rows.append(dict(side=side, held_out=f'fold {i}', train_minutes=card['train_minutes'], precision=card['precision_used'],
                             cpu=f"{cpu['cores']}-core {cpu['cpu']}" if cpu else 'not recorded', **figures(t[t.fold == i])))
        rows.append(dict(side=side, held_out='all slices, out of fold', **figures(t)))
    table = pd.DataFrame(rows)
    table.to_csv(out/f'{name}.csv', index=False, float_format='%.4f')
    m = ta.merge(tb, on=['name', 'fold'], suffixes=('_base', '_new'))
    ga, gb = group_dice(ta), group_dice(tb)
    groups = pd.DataFrame(dict(base=ga, new=gb)).assign(change=lambda g: g.new - g.base)
    groups.index.name = 'group'
    groups.join(ta.groupby('patient' if has_patients(ta) else 'group').fold.first()).to_csv(out/f'{name}_groups.csv', float_format='%.4f')
    per_fold = table[table.held_out.str.startswith('fold')].pivot(index='held_out', columns='side', values='dice_mean')
    summary = dict(base=os.path.relpath(base), new=os.path.relpath(new), recipes_differ_in=recipe_difference(base, new),
                   groups='patients (volumetric Dice)' if has_patients(ta) else 'blocks of the numbering (mean per-slice Dice)',
                   over_groups=paired(groups.base, groups.new), over_slices=paired(m.dice_base, m.dice_new),
                   folds_better=int((per_fold.new > per_fold.base).sum()))
    (out/f'{name}.json').write_text(json.dumps(summary, indent=2) + '\n')
    return summary


def markdown(name:str, out:Path=RESULTS):
    "The results page's table: each fold's mean per-image Dice under both recipes, then the pooled figures, then the paired tests."
    t, s = pd.read_csv(out/f'{name}.csv'), json.loads((out/f'{name}.json').read_text())
    pct = lambda x: '' if pd.isna(x) else f"{100*x:.1f} %"
    cols = ['held out', 'recipe', 'mean per-image Dice', 'median', 'global', 'HD95 mean, px', 'slices under Dice 0.1', 'of those, empty']
    extra = 'dice_patient_mean' in t and t.dice_patient_mean.notna().any()
    if extra: cols += ['per-patient volumetric Dice, mean', 'false-positive slices']
    print('| ' + ' | '.join(cols + ['training, min']) + ' |'); print('|' + '---|' * (len(cols) + 1))
    for held_out, g in t.groupby('held_out', sort=False):
        for _, r in g.iterrows():
            cells = [held_out, r.side, f"{r.dice_mean:.3f}", f"{r.dice_median:.3f}", f"{r.dice_global:.3f}", f"{r.hd95_mean:.1f}",
                     pct(r.frac_dice_lt_0_1), str(int(r.n_empty_misses))]
            if extra: cells += [f"{r.dice_patient_mean:.3f}", pct(r.get('fp_slice_rate'))]
            cells.append('' if pd.isna(r.get('train_minutes')) else f"{r.train_minutes:.1f} ({r.precision}, CPU {r.cpu})")
            print('| ' + ' | '.join(cells) + ' |')
    for k, what in (('over_groups', s['groups']), ('over_slices', 'slices')):
        p = s[k]
        print(f"\nPaired over {p['n']} {what}: new better in {p['better']}, worse in {p['worse']}; mean change {p['mean_change']:+.4f}, "
              f"median {p['median_change']:+.4f}; Wilcoxon signed-rank p = {p['wilcoxon_p']:.2g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--base', type=Path, help='recorded cross-validation of the recipe to compare against')
    ap.add_argument('--new', type=Path, help='recorded cross-validation of the candidate recipe, on the same folds')
    ap.add_argument('--name', required=True, help='writes bench/results/<name>.csv, <name>_groups.csv and <name>.json')
    ap.add_argument('--markdown', action='store_true', help='print the table from the record and stop')
    a = ap.parse_args()
    if a.markdown: return markdown(a.name)
    if not (a.base and a.new): ap.error('--base and --new are required to compare')
    print(json.dumps(compare(a.base, a.new, a.name), indent=2))
    markdown(a.name)


if __name__ == '__main__': main()
