"""The results page, bench/RESULTS.md, rendered from the records under bench/results/ and never edited by hand.

    python bench/results_page.py            # rewrite bench/RESULTS.md from the records
    python bench/results_page.py --check    # exit 1 if bench/RESULTS.md is not what the records give (CI runs this)

Each section names its records and the commands that made them, and its table is read from them. Prose here says only
what a table cannot: the split, the machine, how to read the figures. The README keeps one headline table and links here."""
import argparse, contextlib, io, json, sys
from pathlib import Path
import pandas as pd

BENCH = Path(__file__).parent
RESULTS, PAGE = BENCH/'results', BENCH/'RESULTS.md'
sys.path.insert(0, str(BENCH))


def printed(f, *args) -> str:
    "What `f(*args)` prints, as text: the bench scripts' `markdown()` helpers print their tables."
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): f(*args)
    return buf.getvalue().rstrip('\n')


def cell(v) -> str:
    if isinstance(v, float):
        if pd.isna(v): return ''
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def table(df:pd.DataFrame, cols:list|None=None) -> str:
    "A Markdown table of `df`'s `cols`, numbers as recorded (at most four significant digits)."
    cols = cols or list(df.columns)
    rows = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    rows += ['| ' + ' | '.join(cell(v) for v in r) + ' |' for r in df[cols].itertuples(index=False)]
    return '\n'.join(rows)


def csv(name:str, cols:list|None=None, query:str|None=None) -> str:
    df = pd.read_csv(RESULTS/name)
    return table(df.query(query) if query else df, cols)


def script_table(script:str, name:str) -> str:
    "The table that the bench script `script` makes of its record `name` (its own `markdown(df)`)."
    import importlib
    return importlib.import_module(script).markdown(pd.read_csv(RESULTS/name))


def figshare_cv(record:str) -> str:
    import figshare_cv
    return printed(figshare_cv.markdown, RESULTS/record)


def compare(name:str) -> str:
    import compare_cv
    return printed(compare_cv.markdown, name)


def nifti_vs_tiff() -> str:
    import lgg_to_nifti
    s = json.loads((RESULTS/'nifti_vs_tiff_lgg.json').read_text())
    lines = [f"Same folds: {'yes' if s['same_folds'] and s['same_slice_folds'] else 'no'}; {s['slices']} slices of {s['patients']} patients; "
             f"largest difference in a patient's volumetric Dice {s['largest_patient_difference']:.2g}, in a slice's Dice "
             f"{s['largest_slice_dice_difference']:.2g}; slices whose predicted tumour differs by a pixel: {s['slices_with_other_pixels']}.", '']
    return '\n'.join(lines) + '\n' + printed(lgg_to_nifti.markdown)


def random_against_block() -> str:
    "The same recipe validated on a random split and on the block split: leak-check share, validation and test figures."
    rows = []
    for name, run, check in (('block split', 'figshare_lite0_smp_cl45_fp32', 'leakcheck_figshare_block'),
                             ('random validation split', 'figshare_lite0_smp_randomvalid', 'leakcheck_figshare_randomvalid')):
        ev, leak = (json.loads(p.read_text()) for p in (RESULTS/run/'eval.json', RESULTS/check/'leak_summary.json'))
        v = leak['sides']['valid']
        rows.append({'split': name, 'validation slices with a near copy in training': f"{100 * v['share']:.1f} % ({v['leaks']} of {v['n']})",
                     **{f'{side} {k}': ev[side][k] for side in ('valid', 'test') for k in ('dice_mean', 'dice_median', 'dice_global', 'hd95_mean')}})
    return table(pd.DataFrame(rows))


def lgg_channels_test() -> str:
    s = json.loads((RESULTS/'lgg_channels.json').read_text())
    return (f"Paired over the {s['patients']} patients (volumetric Dice): three sequences better in {s['better']}, worse in {s['worse']}; "
            f"mean change {s['mean_change']:+.4f}; Wilcoxon signed-rank p = {s['wilcoxon_p']:.2g}.")


FOLDS_NOTE = "Five folds of four contiguous blocks of the numbering (20 blocks cut at patient boundaries), 2575 slices"
SECTIONS = [
    dict(title='Figshare: 5-fold cross-validation of the default',
         needs=['fig_cv5_ft/cv_table.csv'],
         text=f"""{FOLDS_NOTE}; each fold is held out of training and of the choice of the best epoch, which a validation set
of blocks from the other folds makes (20 %). The defaults: pretrained lite0 `smp_unet`, 192 px, 10 epochs, every layer trained
from the first step at 1e-3. 2-core AMD EPYC with bf16 instructions, bfloat16.""",
         commands=['bts_train --data ~/data/figshare --out runs/fig_cv5_ft --folds 5',
                   'python bench/figshare_cv.py --record runs/fig_cv5_ft --dest bench/results/fig_cv5_ft',
                   'python bench/figshare_cv.py --dest bench/results/fig_cv5_ft'],
         records=['fig_cv5_ft/'],
         table=lambda: figshare_cv('fig_cv5_ft')),
    dict(title='Figshare: fine-tuning schedules on the same five folds',
         needs=['finetune_figshare.json'],
         text="""Both recipes are the pretrained lite0 `smp_unet` at 192 px for 10 epochs on the same folds (`folds.csv` identical).
**base** is fastai's `fine_tune` (one epoch with the encoder frozen, then the encoder at a tenth of the rate, peak 3e-3:
`--freeze_epochs 1 --lr_mult 10 --lr 3e-3`), the default until this comparison; **new** trains every layer from the first
step at one rate (`--freeze_epochs 0 --lr_mult 1 --lr 1e-3`), the default since. ImageNet features fit photographs; T1-CE
slices are far from them, and an encoder kept frozen or slow leaves tumours unmarked ("of those, empty" counts the slices
under Dice 0.1 where the model marked nothing). The two ran on different CPUs and precisions (last column): base in float32
on a CPU without bf16 instructions, new in bfloat16 on one with them. Slices of one patient are not independent: the paired
test over the 20 blocks is the one that decides.""",
         commands=['python bench/compare_cv.py --base bench/results/fig_cv5_lite0 --new bench/results/fig_cv5_ft --name finetune_figshare'],
         records=['fig_cv5_lite0/', 'fig_cv5_ft/', 'finetune_figshare.csv', 'finetune_figshare.json', 'finetune_figshare_groups.csv'],
         table=lambda: compare('finetune_figshare')),
    dict(title='Figshare: the schedule screened lever by lever on two folds',
         needs=['schedule_screen.csv'],
         text="""Each candidate changes one lever of the default schedule (every layer from the first step, one rate, peak 1e-3,
warm-up a quarter of the cycle) and trains on folds 0 and 3 of the five above, the same slices held out; the default's
figures are its own on those folds. A candidate leads, and earns the other three folds, when its pooled mean per-image Dice
is higher by at least 0.01 with no more slices under 0.1. The table lists the candidates recorded so far. With four blocks per fold, the test over blocks cannot give a p
below 0.008 on two folds; the test over slices overstates the evidence (slices of one patient are not independent).
Pretrained lite0 `smp_unet`, 192 px, 10 epochs; 2-core AMD EPYC with bf16 instructions, bfloat16.""",
         commands=['bts_train --data ~/data/figshare --out runs/fig_cv5_lr2e-3 --folds 5 --fold 0,3 --lr 2e-3',
                   'bts_train --data ~/data/figshare --out runs/fig_cv5_lrmult3 --folds 5 --fold 0,3 --lr_mult 3',
                   'bts_train --data ~/data/figshare --out runs/fig_cv5_freeze1 --folds 5 --fold 0,3 --freeze_epochs 1',
                   'python bench/figshare_cv.py --record runs/fig_cv5_lr2e-3 --dest bench/results/fig_cv5_lr2e-3   # and so on for each',
                   'python bench/schedule_screen.py'],
         records=['fig_cv5_ft/', *(f'{c}/' for c in __import__('schedule_screen').CANDIDATES if (RESULTS/c).exists()), 'schedule_screen.csv'],
         table=lambda: printed(__import__('schedule_screen').markdown)),
    dict(title="Figshare: 5-fold cross-validation of fastai's fine-tuning schedule",
         needs=['fig_cv5_lite0/cv_table.csv'],
         text=f"""{FOLDS_NOTE}, as above. Pretrained lite0 `smp_unet`, 192 px, 10 epochs,
`--freeze_epochs 1 --lr_mult 10 --lr 3e-3`; 2-core AMD EPYC without bf16 instructions, float32.""",
         commands=['bts_train --data ~/data/figshare --out runs/fig_cv5 --folds 5 --freeze_epochs 1 --lr_mult 10 --lr 3e-3',
                   'python bench/figshare_cv.py --record runs/fig_cv5'],
         records=['fig_cv5_lite0/'],
         table=lambda: figshare_cv('fig_cv5_lite0')),
    dict(title='Post-processing and threshold, chosen on the same folds',
         needs=['fig_cv5_lite0/postprocessing.csv', 'fig_cv5_lite0/threshold.csv'],
         text="""The models of the cross-validation above, each scoring its own held-out fold once per variant, all 2575 slices
pooled. Test-time flips and keeping the largest component move the mean by under a hundredth and turn some slices into
misses; a threshold chosen on each fold's validation blocks moves it less. The defaults keep no post-processing and 0.5.
2-core AMD EPYC without bf16, float32.""",
         commands=['python bench/cv_postprocessing.py runs/fig_cv5 --out bench/results/fig_cv5_lite0/postprocessing.csv',
                   'python bench/cv_threshold.py runs/fig_cv5 --out bench/results/fig_cv5_lite0/threshold.csv'],
         records=['fig_cv5_lite0/postprocessing.csv', 'fig_cv5_lite0/threshold.csv'],
         table=lambda: csv('fig_cv5_lite0/postprocessing.csv', ['variant', 'n_images', 'dice_mean', 'dice_median', 'dice_global', 'hd95_mean',
                                                                  'frac_dice_lt_0_1', 'dice_mean_change', 'slices_better', 'slices_worse'], "fold == 'all'")
               + '\n\n' + csv('fig_cv5_lite0/threshold.csv', ['variant', 'n_images', 'dice_mean', 'dice_median', 'dice_global', 'hd95_mean',
                                                               'frac_dice_lt_0_1', 'dice_mean_change'], "fold == 'all'")),
    dict(title='LGG: fine-tuning schedules on the same five folds',
         needs=['finetune_lgg.json'],
         text="""The 20 shared LGG patients in five folds of whole patients, the same folds for both (`folds.csv` identical); the
three sequences as input, pretrained lite0 `smp_unet`, 192 px, 10 epochs. **base** is fastai's `fine_tune`
(`--freeze_epochs 1 --lr_mult 10 --lr 3e-3`), **new** the default since the Figshare comparison (every layer from the first
step at 1e-3). The groups of the paired test are the patients, and per-patient volumetric Dice is the figure to set beside
Buda et al.'s 82 % mean and 85 % median (110 patients). The two ran on different CPUs and precisions (last column).""",
         commands=['bts_train --data ~/data/lgg/kaggle_3m --out runs/lgg_cv5_ft --folds 5',
                   'python bench/lgg_channels.py --record runs/lgg_cv5_ft bench/results/lgg_cv5_ft',
                   'python bench/compare_cv.py --base bench/results/lgg_cv5_rgb --new bench/results/lgg_cv5_ft --name finetune_lgg'],
         records=['lgg_cv5_rgb/', 'lgg_cv5_ft/', 'finetune_lgg.csv', 'finetune_lgg.json', 'finetune_lgg_groups.csv'],
         table=lambda: compare('finetune_lgg')),
    dict(title='LGG as NIfTI volumes: the same folds, the same Dice',
         needs=['nifti_vs_tiff_lgg.json'],
         text="""The 20 shared LGG patients written as NIfTI volumes in the Decathlon's layout (4-D, the three sequences last, an
LPS affine tilted 10 degrees), then cross-validated with the same command as the TIFFs: the reader, the per-volume window
(an 8-bit volume is kept as it is), the orientation and the slice order must give the model the same slices, the folds the
same patients. Patients and slices are paired by case and slice number. Default recipe, 2-core AMD EPYC with bf16.""",
         commands=['python bench/lgg_to_nifti.py --data ~/data/lgg/kaggle_3m --out ~/data/lgg_nifti',
                   'bts_train --data ~/data/lgg_nifti --out runs/lgg_cv5_nifti --folds 5',
                   'python bench/lgg_channels.py --record runs/lgg_cv5_nifti bench/results/lgg_cv5_nifti',
                   'python bench/lgg_to_nifti.py --compare bench/results/lgg_cv5_ft bench/results/lgg_cv5_nifti'],
         records=['lgg_cv5_ft/', 'lgg_cv5_nifti/', 'nifti_vs_tiff_lgg.csv', 'nifti_vs_tiff_lgg.json'],
         table=lambda: nifti_vs_tiff()),
    dict(title='LGG: 5-fold cross-validation, FLAIR against the three sequences',
         needs=['lgg_channels.csv', 'lgg_channels.json'],
         text="""The 20 shared LGG patients in five folds of whole patients (3 to 5 per fold), the same folds for both inputs.
Per-patient volumetric Dice is the figure to set beside Buda et al.'s 82 % mean and 85 % median (110 patients): two thirds of
LGG's slices hold no tumour and score 1 when left empty, which lifts the per-image mean. Pretrained lite0 `smp_unet`,
192 px, 10 epochs, fastai's fine-tuning schedule (the default of the time); 2-core AMD EPYC without bf16, float32.""",
         commands=['bts_train --data ~/data/lgg/kaggle_3m --out runs/lgg_cv5_rgb --folds 5 --channel all --freeze_epochs 1 --lr_mult 10 --lr 3e-3',
                   'python bench/lgg_channels.py --record runs/lgg_cv5_rgb bench/results/lgg_cv5_rgb',
                   'python bench/lgg_channels.py --flair bench/results/lgg_cv5_lite0 --all bench/results/lgg_cv5_rgb'],
         records=['lgg_cv5_lite0/', 'lgg_cv5_rgb/', 'lgg_channels.csv', 'lgg_channels.json', 'lgg_channels_patients.csv'],
         table=lambda: csv('lgg_channels.csv') + '\n\n' + lgg_channels_test()),
    dict(title='How much a random split inflates Dice',
         needs=['figshare_lite0_smp_randomvalid/eval.json'],
         text="""The same recipe (pretrained lite0 `smp_unet`, fastai's schedule) validated on slices drawn at random and on whole
blocks, both scored on the same held-out test blocks. The leak check's share is of validation slices with a near copy in
training. A random split reports what the upstream project reported (0.79); on unseen patients the two models are close.""",
         commands=['bts_leakcheck --split runs/random/split.csv --out leakcheck/'],
         records=['figshare_lite0_smp_cl45_fp32/', 'figshare_lite0_smp_randomvalid/', 'leakcheck_figshare_block/', 'leakcheck_figshare_randomvalid/'],
         table=random_against_block),
    dict(title='Recipes on one block split',
         needs=['recipes.csv'],
         text="""Every candidate trained on the same split of 20 blocks (train 1798, validation 382, test 395 slices), one seed.
Differences under about 0.03 are within what a seed or a split moves (compare the cross-validations above). Rows with
precision `auto` ran in bfloat16 on a CPU with bf16, `fp32` rows on one without. Each recorded candidate ran under the
schedule of its day (`bench/recipes.py` keeps it).""",
         commands=['python bench/recipes.py --data ~/data/figshare --candidates NAME [--budget_min 45]'],
         records=['recipes.csv'],
         table=lambda: script_table('recipes', 'recipes.csv')),
    dict(title='Where the misses are',
         needs=['misses.csv'],
         text="""Test slices of the block split under Dice 0.1, by kind: a mark in the wrong place, too little of the tumour, or
nothing; and the miss rate by tumour size (thirds).""",
         commands=['python bench/misses.py runs/recipes/NAME'],
         records=['misses.csv'],
         table=lambda: csv('misses.csv', ['run', 'side', 'slices', 'misses', 'miss_rate', 'wrong_place', 'too_little', 'nothing',
                                          'miss_rate_small', 'miss_rate_medium', 'miss_rate_large'])),
    dict(title='An ensemble of recipes',
         needs=['recipes_ensemble.csv'],
         text='Three models of the block split and the average of their probabilities.',
         commands=['python bench/ensemble_recipes.py'],
         records=['recipes_ensemble.csv'],
         table=lambda: csv('recipes_ensemble.csv')),
    dict(title='Across data sets',
         needs=['cross_dataset.csv'],
         text="""Models trained on Figshare, on LGG (FLAIR) or on both, each scored on the held-out test patients of each set.
`fp_slice_rate` is the share of slices without tumour where the model marks something (`_min_area_200`: ignoring marks
under 200 pixels).""",
         commands=['python bench/cross_dataset.py --models NAME=RUN ... --sets NAME=SPLIT_CSV ...'],
         records=['cross_dataset.csv', 'cross_dataset_resnet18.csv'],
         table=lambda: script_table('cross_dataset', 'cross_dataset.csv')),
    dict(title='Speed on a CPU',
         needs=['encoders_speed.csv', 'archs.csv', 'inference.csv', 'archive/archive.csv'],
         text="""Training images/s of each network (the budget's probe), inference slices/s, and `bts_predict` on an archive.
2-core AMD EPYC; the CPU and precision are in each row where the record has them.""",
         commands=['python bench/encoders.py [--precision bf16]', 'python bench/archs.py', 'python bench/inference.py', 'python bench/archive.py'],
         records=['encoders_speed.csv', 'archs.csv', 'inference.csv', 'archive/'],
         table=lambda: '\n\n'.join([csv('encoders_speed.csv', ['arch', 'encoder', 'size', 'bs', 'precision', 'params_M', 'train_img_s', 'cpu', 'threads']),
                                    csv('archs.csv'), csv('inference.csv', ['arch', 'train_size', 'input_px', 'tta', 'bs', 'n', 'slices_per_s', 'peak_rss_mb']),
                                    csv('archive/archive.csv')])),
    dict(title='Training speed: the bare step, the fastai loop, the loaders',
         needs=['train_speed.csv'],
         text="""The default network (pretrained lite0 `smp_unet`); the CPU is named in each row (here a 2-core AMD EPYC with bf16
instructions). `bare loop`: the optimiser step alone on random
data (the budget's probe), per precision and memory order. `bts_train loop`: fastai's fit with bts_train's Learner and
precision callbacks on real Figshare slices, through the CPU pipeline (albumentations, one slice at a time) and the device
pipeline (the cache of chapter `00e_device_data`, here in host memory); its training phase, validation left out.
`loaders alone`: batches without a model. On a CPU the network is the cost, and the loop runs as fast as the network
allows; the device pipeline is for GPUs, where the loaders were the cost.""",
         commands=['python bench/train_speed.py --data ~/data/figshare'],
         records=['train_speed.csv'],
         table=lambda: csv('train_speed.csv', ['path', 'pipeline', 'precision', 'memory_format', 'size', 'bs', 'img_s', 'cpu', 'threads'])),
    dict(title='A long run on a GPU',
         needs=['gpu_long/gpu_long.csv'],
         text="""`bench/gpu_long.py`: the default recipe at 256 px through the device pipeline, batch 32 at a peak rate of 2e-3 (the
square-root rule for AdamW), epochs fitted to the minutes by the speed probe; on the README's block split, or on the
five Figshare folds.""",
         commands=['python bench/gpu_long.py --data ~/data/figshare --out runs/gpu_long [--folds]'],
         records=['gpu_long/'],
         table=lambda: csv('gpu_long/gpu_long.csv')),
    dict(title='CPU inference: PyTorch, TorchScript, ONNX Runtime',
         needs=['inference_backends.csv'],
         text="""The default network (smp_unet, lite0) at each input size through each backend, 96 real Figshare slices in batches of 8,
each row a fresh process. `startup_s` runs from the process's start to its first batch done; `max_prob_diff` is the largest
difference from eager PyTorch's probabilities. On a CPU, `bts_predict`, `bts_evaluate` and the app take ONNX Runtime
whenever the run has a current `model.onnx`. The OpenVINO rows (the registry package `openvino`, not a requirement of
bts_nb) run the same `model.onnx`: in float32, and in bfloat16 on the CPU's bf16 instructions, which changes the
probabilities (`max_prob_diff`), so it is not adopted without a Dice check on trained models.""",
         commands=['python bench/backends.py --data ~/data/figshare'],
         records=['inference_backends.csv'],
         table=lambda: csv('inference_backends.csv')),
    dict(title='Several processes',
         needs=['distributed.csv'],
         text="""The default recipe on the phantoms in one and in two DDP processes on the same 2 cores (gloo). With `--bs 8` per
process, two processes step on batches of 16, so they make half as many steps in the same epochs.""",
         commands=['python bench/distributed.py'],
         records=['distributed.csv', 'distributed.json'],
         table=lambda: csv('distributed.csv')),
    dict(title='On a GPU',
         needs=['gpu_h200/gpu_sweep.csv'],
         text="""One NVIDIA H200, ResNet-18 `smp_unet` from random weights (the default of the time), block split, one seed.""",
         commands=['bash bench/gpu_sweep.sh'],
         records=['gpu_h200/'],
         table=lambda: csv('gpu_h200/gpu_sweep.csv')),
]


def render() -> str:
    out = ['# Results', '',
           '*Generated by `python bench/results_page.py` from the records under `bench/results/`; do not edit by hand.*', '',
           'Every figure is on patients the model never saw: slices are scored by a model whose training and choice of epoch '
           'excluded their patient (or, for Figshare, their block of the numbering). Dice is per image unless a column says '
           'otherwise, HD95 is in pixels at the images\' own size.', '']
    for s in SECTIONS:
        if not all((RESULTS/n).exists() for n in s['needs']): continue     # a section appears once its records are complete
        out += [f"## {s['title']}", '', ' '.join(s['text'].split()), '', '```sh', *s['commands'], '```', '',
                s['table'](), '', 'Records: ' + ', '.join(f'`bench/results/{r}`' for r in s['records']) + '.', '']
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--check', action='store_true', help='exit 1 if bench/RESULTS.md differs from what the records give')
    a = ap.parse_args()
    page = render()
    if a.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            raise SystemExit(f"{PAGE} is not what the records under {RESULTS} give: run python bench/results_page.py")
        return print(f"{PAGE} is current")
    PAGE.write_text(page)
    print(f"wrote {PAGE}")


if __name__ == '__main__': main()
