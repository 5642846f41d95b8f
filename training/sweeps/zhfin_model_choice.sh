#!/bin/bash
# Model choice for qingfin-zhfin (issue 6): the full 12-layer encoder vs its bottom 6 layers at
# two learning rates each, then 6-layer students distilled from the better 12-layer teacher and a
# frozen-embedding variant, then longer students. Results: README "Model choice". Every run is
# `qingfin train` on training/configs/zhfin.toml, reset to the sweep's starting point (SWEEP_START:
# the first candidate's settings, no teacher) plus the overrides named here.
#
#   BASE=~/.cache/qingfin/base/<key> RUNS=runs/sweep bash training/sweeps/zhfin_model_choice.sh
#
# Runs in each phase go in parallel (one GPU is shared; each process gets THREADS CPU threads).
# Sized for one GPU: at most MINUTES (4) of training per run in phase 1, MINUTES2 (3) in
# phase 2 and MINUTES3 (3) in phase 3 (whole minutes); the release ran phases 1-2 with
# MINUTES2=2 and phase 3 as a second call with MINUTES3=3. On 2 CPU cores one 6-layer run alone
# needs about 35 minutes for 6 epochs: raise the limits there. Then compare
# `RUNS/*/train_summary.json` (best_dev_macro_f1) and ship the fastest model within 1 dev
# macro-F1 point of the best.
# EXTRA adds overrides to every run (a smoke test: EXTRA="--set train.max_steps=2").
set -u
: "${BASE:?set BASE to a prepared base directory (qingfin base prepare)}"
RUNS=${RUNS:-runs/sweep}; THREADS=${THREADS:-3}; PY=${PY:-python3}
export TQDM_DISABLE=1  # progress bars would bury the logs
mkdir -p "$RUNS"
start=$(date +%s)
SWEEP_START=(--set train.teacher= --set train.epochs=6 --set train.learning_rate=1.5e-4
             --set train.early_stopping_patience=2 --set train.distill_temperature=1.0)
run() {  # name, overrides...
  local name=$1; shift
  # max_minutes ends training gracefully (best checkpoint kept); timeout is only a backstop.
  timeout $(( ${MINUTES:-4} * 60 + 120 )) "$PY" -m qingfin.training.cli train --config training/configs/zhfin.toml \
    --set "model.base=$BASE" --set "train.output_dir=$RUNS/$name" --set "train.threads=$THREADS" \
    --set "train.max_minutes=${MINUTES:-4}" "${SWEEP_START[@]}" \
    "$@" ${EXTRA:-} > "$RUNS/$name.log" 2>&1
  echo "$name rc=$? at $(( $(date +%s) - start ))s"
  grep -a -E "trained in|Error|error:" "$RUNS/$name.log" | tail -n 2
}
echo "phase 1: 12 vs 6 layers"
run l12_lr1e-4_e8 --set model.layers=0 --set train.learning_rate=1e-4 --set train.epochs=8 &
run l12_lr2e-4_e8 --set model.layers=0 --set train.learning_rate=2e-4 --set train.epochs=8 &
run l6_release &
run l6_lr2e-4_e10 --set train.learning_rate=2e-4 --set train.epochs=10 &
run l6_lr3e-4_e10 --set train.learning_rate=3e-4 --set train.epochs=10 &
wait
teacher=$("$PY" - "$RUNS" <<'PY'
import json, pathlib, sys
scores = [(json.loads(p.read_text())["best_dev_macro_f1"], p.parent.name)
          for p in pathlib.Path(sys.argv[1]).glob("l12_*/train_summary.json")]
print(max(scores)[1] if scores else "")
PY
)
echo "phase 2 at $(( $(date +%s) - start ))s: students of ${teacher:-(no 12-layer run finished)}"
if [ -n "$teacher" ]; then
  MINUTES=${MINUTES2:-3}
  T="train.teacher=$RUNS/$teacher/model"
  run l6_distill_a05 --set "$T" --set train.distill_alpha=0.5 --set train.learning_rate=2e-4 --set train.epochs=10 &
  run l6_distill_a08 --set "$T" --set train.distill_alpha=0.8 --set train.learning_rate=2e-4 --set train.epochs=10 &
  run l6_frozen_emb_lr3e-4 --set model.freeze_embeddings=true --set train.learning_rate=3e-4 --set train.epochs=10 &
  wait
  # Round 2: the 6-layer runs above were still improving when early stopping (patience 2) or the
  # epoch count ended them, so: 12 epochs, patience 4, softer teacher (temperature 2), lower rates.
  echo "phase 3 at $(( $(date +%s) - start ))s: longer students"
  MINUTES=${MINUTES3:-3}
  L="--set train.epochs=12 --set train.early_stopping_patience=4"
  run d05_t2 --set "$T" $L --set train.distill_alpha=0.5 --set train.distill_temperature=2.0 --set train.learning_rate=2e-4 &
  run d07_lr15 --set "$T" $L --set train.distill_alpha=0.7 --set train.learning_rate=1.5e-4 &
  run d05_lr1 --set "$T" $L --set train.distill_alpha=0.5 --set train.learning_rate=1e-4 &
  run d09_lr2 --set "$T" $L --set train.distill_alpha=0.9 --set train.learning_rate=2e-4 &
  run l6_lr1e-4_e12 $L --set train.learning_rate=1e-4 &
  wait
fi
echo "sweep done at $(( $(date +%s) - start ))s"
