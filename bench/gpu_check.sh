#!/usr/bin/env bash
# GPU checks in one call, from the repository root of a CUDA machine:
#   bash bench/gpu_check.sh DATA_DIR [OUT_DIR]
# DATA_DIR holds squad-dev-articles-00-39.json, dev-v1.1.json and bert-base-cased/ (the tokenizer), i.e. copies of
# ../shared/squad and ../shared/tokenizers. Python wheels missing on the machine (datasets, dill, multiprocess,
# jsonargparse, docstring-parser, typeshed-client) can sit in .whl/; they are installed to /tmp/site first.
# What it does:
#   1. mixed precision through the CLI: the debug config on the GPU with the automatic precision (bf16-mixed where
#      supported) and with 16-mixed; prints each run's eval_results.json;
#   2. the speed benchmark on bert-base-cased shapes (random init), batch 32, bf16: ours vs transformers.Trainer
#      -> OUT_DIR/results-cuda.md;
#   3. the same training comparison with torch.compile added -> OUT_DIR/results-cuda-compile.md.
set -uo pipefail
DATA=${1:?usage: bash bench/gpu_check.sh DATA_DIR [OUT_DIR]}
OUT=${2:-bench}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, lightning, datasets, pyarrow; print('torch', torch.__version__, 'transformers', transformers.__version__, 'lightning', lightning.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__)"

echo "== 1. mixed precision through the CLI (debug config on the GPU)"
for prec in auto 16-mixed; do
  root=/tmp/gpu_debug_$prec
  extra=(); [ "$prec" != auto ] && extra=(--trainer.precision "$prec")
  timeout 180 python3 -m qa_lightning fit --config configs/debug.yaml --trainer.accelerator gpu \
    --trainer.default_root_dir "$root" --trainer.logger.init_args.save_dir "$root" --data.cache_dir /tmp/gpu_cache \
    --trainer.enable_progress_bar false "${extra[@]}" > "$OUT/cli_$prec.log" 2>&1
  echo "precision=$prec rc=$? $(grep -m1 -E 'Automatic Mixed Precision|AMP|precision' "$OUT/cli_$prec.log")"
  cat "$root"/lightning_logs/version_0/eval_results.json 2>/dev/null | tr -d '\n '; echo
done

echo "== 2. speed: bert-base shapes, batch 32, bf16"
timeout 300 python3 -m bench --device cuda --model bert-base-shapes \
  --train-file "$DATA/squad-dev-articles-00-39.json" --dev-file "$DATA/dev-v1.1.json" \
  --tokenizer "$DATA/bert-base-cased" --steps 50 --warmup-steps 5 --ours-warmup-steps 60 --ours-steps 110 --out "$OUT/results-cuda.md" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -E '^\|' "$OUT/results-cuda.md" 2>/dev/null || tail -n 20 "$OUT/bench.log"

echo "== 3. speed with torch.compile"
timeout 240 python3 -m bench --device cuda --model bert-base-shapes --stages train --compile \
  --train-file "$DATA/squad-dev-articles-00-39.json" --tokenizer "$DATA/bert-base-cased" --steps 15 --warmup-steps 5 --ours-warmup-steps 60 \
  --ours-steps 110 --out "$OUT/results-cuda-compile.md" > "$OUT/bench_compile.log" 2>&1
echo "compile rc=$?"; grep -E '^\|' "$OUT/results-cuda-compile.md" 2>/dev/null || tail -n 20 "$OUT/bench_compile.log"
