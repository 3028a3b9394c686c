#!/usr/bin/env bash
# Fine-tuning speed, side by side with PyTorch in the same run: LoRA (rank 8, alpha 16 on q,v) and
# full fine-tuning of a random-weight SmolLM-135M-shaped model (F32, written by bench_make_model)
# at batch 4 × 256, our trainer (bench_train) and an equivalent PyTorch loop
# (bench/bench_train_torch.py, /usr/bin/python3, Debian's python3-torch on Debian's OpenBLAS) back
# to back, each in its own process so that peak RSS is per process. Prints a table with the ratios
# ours / PyTorch and keeps the JSON lines in out/bench-train/results-<time>.jsonl.
#
# Usage: bench/run_train_bench.sh [--steps N (4)] [--warmup N (2)] [--threads N (2)]
#                                 [--methods lora,full] [--reps R (1)] [--build DIR (build/release)] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=4 warmup=2 threads=2 methods=lora,full reps=1 B=build/release build=1
while [ $# -gt 0 ]; do
    case $1 in
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --build) B=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--steps N] [--warmup N] [--threads N] [--methods lora,full] [--reps R] [--build DIR] [--no-build]" >&2; exit 2 ;;
    esac
done
[ "$build" = 0 ] || make -j"$(nproc)" BUILD="$B" bench >/dev/null
PY=/usr/bin/python3
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)
case $blas in
*openblas-pthread*) ;;
*) echo "run_train_bench: libblas.so.3 is $blas, not Debian's libopenblas0-pthread: PyTorch would use a slow BLAS" >&2
   echo "  (apt-get install libopenblas0-pthread; update-alternatives --display libblas.so.3-x86_64-linux-gnu)" >&2
   exit 1 ;;
esac
OUT=out/bench-train
mkdir -p "$OUT"
model=$OUT/smollm-135m-f32.gguf
[ -f "$model" ] || "$B/bench_make_model" "$model" smollm-135m f32
res=$OUT/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
common=(--warmup "$warmup" --steps "$steps" --threads "$threads" --batch 4 --seq 256)
load() { cut -d' ' -f1 /proc/loadavg; }
run() { # IMPL METHOD REP
    local l0 l1 json
    l0=$(load)
    if [ "$1" = llmops ]; then json=$("$B/bench_train" "$model" --method "$2" "${common[@]}")
    else json=$("$PY" bench/bench_train_torch.py "$model" --method "$2" "${common[@]}"); fi
    l1=$(load)
    printf '%s\n' "$json" | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read()); d.update(rep=int(sys.argv[1]), load_before=float(sys.argv[2]), load_after=float(sys.argv[3]), utc=sys.argv[4]); print(json.dumps(d))' \
        "$3" "$l0" "$l1" "$(date -u +%H:%M:%S)" >>"$res"
}
echo "fine-tuning benchmark: $threads threads, batch 4 × 256, $warmup warm-up + $steps measured steps; $(nproc) cores, load $(load)" >&2
for ((r = 1; r <= reps; r++)); do
    for m in ${methods//,/ }; do
        echo "  rep $r $m: llmops ..." >&2
        run llmops "$m" "$r"
        echo "  rep $r $m: pytorch ..." >&2
        run pytorch "$m" "$r"
    done
done
"$PY" - "$res" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"results: {sys.argv[1]}")
print("| method | rep | llmops tok/s | PyTorch tok/s | ratio | llmops peak RSS MiB | PyTorch peak RSS MiB | RSS ratio | loss (first step) llmops / PyTorch | load avg |")
print("|---|---|---|---|---|---|---|---|---|---|")
pairs = {}
for d in rows:
    pairs.setdefault((d["method"], d["rep"]), {})[d["impl"]] = d
for (m, r), p in pairs.items():
    o, t = p.get("llmops"), p.get("pytorch")
    if not o or not t:
        continue
    loads = [o["load_before"], o["load_after"], t["load_before"], t["load_after"]]
    print(f"| {m} | {r} | {o['tokens_per_s']:.1f} | {t['tokens_per_s']:.1f} | {o['tokens_per_s'] / t['tokens_per_s']:.2f} "
          f"| {o['peak_rss_mib']:.0f} | {t['peak_rss_mib']:.0f} | {o['peak_rss_mib'] / t['peak_rss_mib']:.2f} "
          f"| {o['loss_first']:.4f} / {t['loss_first']:.4f} | {min(loads):.1f}–{max(loads):.1f} |")
EOF
