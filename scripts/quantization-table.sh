#!/usr/bin/env bash
# Reproduces the results table of docs/quantization.md: bundled tiny-opt,
# evaluated on SQuAD dev paragraphs 0:64, calibrated on paragraphs 100:164
# (never on the evaluation text), group size 32 (tiny-opt's 96-wide
# embedding, project_in and tied head rule out the default 64).
#
#   scripts/quantization-table.sh [path/to/dilemma]     (default: build/release/examples/dilemma)
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${1:-build/release/examples/dilemma}
MODEL=assets/models/tiny-opt
SQUAD=assets/data/squad/dev-v1.1.json
EVAL=0:64
CALIB=100:164
GROUP=32
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "| model | method | loss (nats) | perplexity | KL(teacher‖model) | top-1 agreement | weight bytes | ratio of f32 bits |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
row() {  # row FORMATS METHOD
  local formats=$1 method=$2 dir="$work/$1-$2"
  local calib=()
  [ "$method" = rtn ] || calib=(--calib "$SQUAD" --paragraphs "$CALIB")
  "$CLI" quantize --model "$MODEL" --formats "$formats" --method "$method" "${calib[@]}" --group-size "$GROUP" \
    --out "$dir" --json >"$work/quantize.json"
  "$CLI" eval --model "$dir" --teacher "$MODEL" --compare-teacher --squad "$SQUAD" --paragraphs "$EVAL" --json \
    >"$work/eval.json"
  python3 - "$formats" "$method" "$work/quantize.json" "$work/eval.json" <<'PY'
import json, sys
formats, method, q, e = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
print(f"| {formats} | {method} | {e['loss']:.4f} | {e['perplexity']:.2f} | {e['kl']:.5f} | {e['top1_agreement']:.4f} "
      f"| {q['weight_bytes']:,} | {100 * q['ratio']:.1f} % |")
PY
}
row f32 rtn
row f16 rtn
row int8 rtn
row int4 rtn
row int4 clip
row int4 gptq
row int4 kd
