#!/usr/bin/env bash
# The GPU runs of bench/results/gpu_h200/: the default command alone, then the GPU recipe and CPU-budget candidates in parallel.
#   bash bench/gpu_sweep.sh DATA RUNS        e.g. bash bench/gpu_sweep.sh ../shared/data/figshare runs/gpu
# Every run uses the Figshare block split of the README (15 % / 15 %, seed 42; the seed-1 and 256 px/40-epoch runs
# reuse the first run's split.csv). Validation decides; the test blocks are only reported. Needs a CUDA GPU and ~16 cores:
# phase 2 runs 7 trainings at once, so its minutes are under contention.
set -u
DATA=${1:?dataset folder}; R=${2:?runs folder}; mkdir -p "$R"
export OMP_NUM_THREADS=2 NO_ALBUMENTATIONS_UPDATE=1
HALF=$R/half_decoder.yaml; printf 'arch_kw:\n  decoder_channels: [128, 64, 32, 16, 8]\n' > $HALF
train() { name=$1; shift; bts_train --data "$DATA" --valid_pct 0.15 --test_pct 0.15 --out $R/$name "$@" > $R/$name.log 2>&1
          echo "$name rc $? $(grep -E '^validation' $R/$name.log)"; }
train G0_default                                                  # the default command, alone (loaders: up to 8 workers)
train G1_s256_e40 --split $R/G0_default/split.csv --size 256 --epochs 40 --num_workers 3 & pids="$!"
train S0_seed1 --seed 1 --split $R/G0_default/split.csv --epochs 14 --num_workers 2 & pids="$pids $!"
train S1_half192_e20 --config $HALF --epochs 20 --num_workers 2 & pids="$pids $!"
train S2_half256_e12 --config $HALF --size 256 --epochs 12 --num_workers 2 & pids="$pids $!"
train S3_lr1e-2 --lr 1e-2 --epochs 14 --num_workers 2 & pids="$pids $!"
train S4_lr1e-3 --lr 1e-3 --epochs 14 --num_workers 2 & pids="$pids $!"
train S5_s256_e10 --size 256 --epochs 10 --num_workers 2 & pids="$pids $!"
wait $pids
