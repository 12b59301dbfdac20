#!/usr/bin/env bash
# The GPU check in one call (< 8 minutes on one H100/H200), from the repository root of a CUDA machine:
#   bash bench/gpu_check.sh DATA_DIR [OUT_DIR]        # OUT_DIR default: $OUT if set, else bench/gpu-<date>
# DATA_DIR (e.g. the git-ignored .device/) holds copies of ../shared/squad/squad-dev-articles-00-39.json,
# ../shared/squad/dev-v1.1.json and ../shared/tokenizers/bert-base-cased/ (tokenizer only: bert-base SHAPES are
# initialised randomly from a BertConfig, no weights travel). Python wheels missing on the machine (datasets,
# jsonargparse, accelerate, ...) may sit in DATA_DIR/whl/ or .whl/; they are installed to /tmp/site first.
# What it runs, each part under its own timeout, within one overall budget (BUDGET_S, default 450 s):
#   1. default configuration vs the peer, bert-base shapes, batch 32, bf16, 3 alternating rounds, + the eval stage
#      (validate on all of dev-v1.1) -> projected time of the 3-epoch recipe; step-time histogram in the details;
#   2. variants at batch 32 (1 round each), skipped when this checkout's CLI lacks the option: --model.compile true
#      (+ pad 64) | reduce-overhead CUDA graphs (+ length buckets) | batch 8 | --model.unpadded true | pad 64;
#   3. the debug config through the CLI on the GPU with the automatic precision (bf16-mixed where supported),
#      then `ask` on its export on the GPU and on the CPU.
# Every part writes OUT_DIR/<part>.md (the table) and OUT_DIR/<part>.log; the summary goes to stdout and
# OUT_DIR/summary.txt. Dry run on a CPU (tiny model, a few steps): DEVICE=cpu MODEL=tiny QUICK=1 bash bench/gpu_check.sh D
set -u -o pipefail
DATA=${1:?usage: bash bench/gpu_check.sh DATA_DIR [OUT_DIR]}
DATA=$(cd "$DATA" && pwd)
OUTDIR=${2:-${OUT:-bench/gpu-$(date +%Y%m%d-%H%M)}}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-bert-base-shapes}
BUDGET_S=${BUDGET_S:-450}
PY=${PYTHON:-python3}
START=$(date +%s)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
SUMMARY=$OUTDIR/summary.txt
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

for whl in "$DATA/whl" .whl; do
  if [ -d "$whl" ] && ls "$whl"/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$whl"/*.whl \
      && export PYTHONPATH=/tmp/site:$PYTHONPATH || say "wheel install from $whl failed"
  fi
done

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then  # dry run: a few steps
  STEPS=(--steps 2 --warmup-steps 1 --ours-steps 3 --ours-warmup-steps 1 --max-length 128 --stride 32)
  ROUNDS=1
else  # ours: warm-up over one whole mega-batch (50 batches): every batch shape seen (and compiled) once
  STEPS=(--steps 20 --warmup-steps 5 --ours-steps 60 --ours-warmup-steps 60)
  ROUNDS=3
fi

say "== gpu_check $(date -u +%Y-%m-%dT%H:%MZ) device=$DEVICE model=$MODEL data=$DATA out=$OUTDIR"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee -a "$SUMMARY"
$PY - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib
for m in ("torch", "transformers", "lightning", "datasets", "accelerate", "jsonargparse", "pyarrow"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"), end="; ")
    except Exception as err:  # the part that needs it will fail and say so
        print(m, "MISSING", type(err).__name__, end="; ")
print()
EOF
for f in squad-dev-articles-00-39.json dev-v1.1.json bert-base-cased/tokenizer.json; do
  [ -e "$DATA/$f" ] || say "missing: $DATA/$f"
done

# Which GPU options this checkout's CLI has (other work adds them): the fit parser's full config, once.
$PY -m qa_lightning fit --print_config > "$OUTDIR/print_config.yaml" 2> "$OUTDIR/print_config.err" \
  || say "fit --print_config failed (see print_config.err): variants will be skipped"
has_option() {  # has_option model compile_mode -> 0 when "  compile_mode:" sits under "model:"
  awk -v sec="$1:" -v key="  $2:" '$0 == sec {s = 1; next} /^[^ ]/ {s = 0} s && index($0, key) == 1 {f = 1} END {exit !f}' \
    "$OUTDIR/print_config.yaml"
}

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# run PART CAP_S ARGS...: python -m bench under min(CAP_S, what is left of the budget); prints its table rows.
run() {
  local part=$1 cap=$2; shift 2
  local t=$(left)
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 30 ]; then say "-- $part: skipped (budget spent)"; return; fi
  say "-- $part (timeout ${t}s): python -m bench $*"
  local t0=$(date +%s)
  timeout -k 10 "$t" $PY -m bench --device "$DEVICE" --model "$MODEL" --train-file "$DATA/squad-dev-articles-00-39.json" \
    --dev-file "$DATA/dev-v1.1.json" --tokenizer "$DATA/bert-base-cased" --work-dir "/tmp/gpu_check_work/$part" \
    --out "$OUTDIR/$part.md" "$@" > "$OUTDIR/$part.log" 2>&1
  local rc=$?
  say "   rc=$rc in $(( $(date +%s) - t0 ))s"
  if [ -f "$OUTDIR/$part.md" ]; then
    grep -E '^\| (train|eval|projection)' "$OUTDIR/$part.md" | tee -a "$SUMMARY"
    grep -E '^- (train rounds|train/ours step-time|train: real|projection)' "$OUTDIR/$part.md" | tee -a "$SUMMARY"
  else
    tail -n 15 "$OUTDIR/$part.log" | tee -a "$SUMMARY"
  fi
}

# Parts in order of priority: each is skipped once the budget is spent.
run b32-default 180 --batch-size 32 --rounds "$ROUNDS" --stages train,eval "${STEPS[@]}"
variant() {  # variant PART CAP SECTION OPTION "OURS ARGS": one round at batch 32 when this CLI has the option
  if has_option "$3" "$4"; then
    run "$1" "$2" --batch-size 32 --rounds 1 --stages train "${STEPS[@]}" --ours-args "$5"
  else say "-- $1: skipped (no --$3.$4)"; fi
}
variant b32-compile-pad64 130 model compile "--model.compile true --data.pad_to_multiple_of 64"
variant b32-compile-ro-buckets 150 model compile_mode \
  "--model.compile true --model.compile_mode reduce-overhead --model.compile_dynamic false --data.length_buckets auto"
run b8-default 70 --batch-size 8 --rounds 1 --stages train "${STEPS[@]}"
variant b32-unpadded 70 model unpadded "--model.unpadded true"
variant b32-pad64 60 data pad_to_multiple_of "--data.pad_to_multiple_of 64"

t=$(left)
if [ "$t" -ge 40 ]; then
  [ "$t" -gt 90 ] && t=90
  say "-- cli-debug (timeout ${t}s): python -m qa_lightning fit --config configs/debug.yaml on $DEVICE, automatic precision"
  acc=gpu; [ "$DEVICE" = cpu ] && acc=cpu
  timeout -k 10 "$t" $PY -m qa_lightning fit --config configs/debug.yaml --trainer.accelerator "$acc" \
    --trainer.default_root_dir /tmp/gpu_check_debug --trainer.logger.init_args.save_dir /tmp/gpu_check_debug \
    --data.cache_dir /tmp/gpu_check_work/debug-cache --trainer.enable_progress_bar false > "$OUTDIR/cli-debug.log" 2>&1
  say "   rc=$? $(grep -m1 -iE 'mixed precision|bf16|16-mixed' "$OUTDIR/cli-debug.log")"
  say "   $(cat /tmp/gpu_check_debug/lightning_logs/version_*/eval_results.json 2>/dev/null | tr -d '\n ' | tail -c 300)"
  # ask on the export, on the device (the inference path's autocast), against the same question on the CPU
  exp=$(ls -d /tmp/gpu_check_debug/lightning_logs/version_*/export 2>/dev/null | head -1)
  if [ -n "$exp" ]; then
    q=(--question "Which NFL team represented the AFC at Super Bowl 50?" --context "Super Bowl 50 was an American football game. The American Football Conference (AFC) champion Denver Broncos defeated the National Football Conference (NFC) champion Carolina Panthers 24-10.")
    say "   ask on $DEVICE: $(timeout 60 $PY -m qa_lightning ask --model "$exp" --device "$DEVICE" "${q[@]}" 2>&1 | tail -n 2 | tr '\n' ' ')"
    say "   ask on cpu:  $(timeout 60 $PY -m qa_lightning ask --model "$exp" --device cpu "${q[@]}" 2>&1 | tail -n 2 | tr '\n' ' ')"
  fi
else say "-- cli-debug: skipped (budget spent)"; fi
say "== done in $(( $(date +%s) - START ))s; tables in $OUTDIR"
