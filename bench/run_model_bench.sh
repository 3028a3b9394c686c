#!/usr/bin/env bash
# Generation and prompt speed of the engine on the issue's benchmark shapes
# (random weights of SmolLM-135M and TinyLlama-1.1B), each quantized with
# `llmops quantize`, with the memory bandwidth measured in the same run.
# Usage: bench/run_model_bench.sh [smollm|tinyllama|all] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-smollm}
threads=${2:-0}
make -j"$(nproc)" bench >/dev/null
B=build/release
OUT=out/bench-models
mkdir -p "$OUT"
run() { # NAME SHAPE REPS
    local name=$1 shape=$2 reps=$3
    [ -f "$OUT/$name-f16.gguf" ] || $B/bench_make_model "$OUT/$name-f16.gguf" "$shape" f16
    for q in q8_0 q4_0; do
        [ -f "$OUT/$name-$q.gguf" ] || $B/llmops quantize "$OUT/$name-f16.gguf" "$OUT/$name-$q.gguf" "$q" 2>/dev/null
    done
    for q in q8_0 q4_0 f16; do
        $B/llmops bench -m "$OUT/$name-$q.gguf" -p 512 -n 128 --reps "$reps" --threads "$threads" --json
    done
}
case $which in
smollm) run smollm-135m smollm-135m 3 ;;
tinyllama) run tinyllama-1.1b tinyllama-1.1b 1 ;;
all) run smollm-135m smollm-135m 3; run tinyllama-1.1b tinyllama-1.1b 1 ;;
esac
