# `llmops bench`: its JSON is checked against figures computed here from the model file itself (the
# llama2.c header read by Python): the KV-cache size, the mapped file size, the bandwidth bound and
# the ratios; and bad arguments give clear errors.
. "$(dirname "$0")/lib.sh"

MODEL=models/stories260K/stories260K.bin
OUTJ="$TMP/bench.json"
if $LLMOPS bench -m "$MODEL" -p 48 -n 16 --reps 3 --threads 1 --json >"$OUTJ" 2>"$TMP/bench.err"; then
    check "bench --json figures agree with the model file and with each other" $PY - "$OUTJ" "$MODEL" <<'EOF'
import json, os, struct, sys
r = json.load(open(sys.argv[1]))
dim, hidden, n_layers, n_heads, n_kv, vocab, seq = struct.unpack("<7i", open(sys.argv[2], "rb").read(28))
n_kv = n_kv or n_heads
n_ctx = max(48, 16) + 8
kv = 2 * n_layers * n_ctx * n_kv * (dim // n_heads) * 2          # K and V, F16 cells
bad = []
def want(cond, what):
    if not cond: bad.append(what)
want(r["pp"] == 48 and r["tg"] == 16 and r["threads"] == 1 and r["n_batch"] == 48, "echoed settings")
want(r["pp_tokens_per_s"] > 0 and r["tg_tokens_per_s"] > 0 and r["triad_bytes_per_s"] > 1e8, "speeds")
# each generation run has its own triad; the bandwidth is their median, the fraction the median of each
# run's speed against its own triad's bound, and the speed the best run
tg, bw = r["tg_tokens_per_s_per_run"], r["triad_bytes_per_s_per_run"]
want(len(tg) == 3 and len(bw) == 3 and min(bw) > 1e8, "one triad per run")
want(abs(r["tg_tokens_per_s"] - max(tg)) <= 1e-2 and abs(r["triad_bytes_per_s"] - sorted(bw)[1]) <= 1, "best run, median triad")
want(abs(r["tg_bound_tokens_per_s"] - r["triad_bytes_per_s"] / r["weight_bytes_per_token"]) <= 1e-2 * r["tg_bound_tokens_per_s"], "bound = bandwidth / bytes")
want(abs(r["tg_fraction_of_bound"] - sorted(t * r["weight_bytes_per_token"] / b for t, b in zip(tg, bw))[1]) <= 2e-3, "fraction")
# and a plain read (no writes) after each triad, with the fraction against it likewise
rd = r["read_bytes_per_s_per_run"]
want(len(rd) == 3 and min(rd) > 1e8 and abs(r["read_bytes_per_s"] - sorted(rd)[1]) <= 1, "one read per run, median read")
want(abs(r["tg_fraction_of_read"] - sorted(t * r["weight_bytes_per_token"] / b for t, b in zip(tg, rd))[1]) <= 2e-3, "fraction of read")
# each anchor runs for as long as its generation run (the sustained rate) and also reports its best pass:
# a rate averaged over several passes cannot exceed the best of them; the peak fractions likewise
tp, rp = r["triad_peak_bytes_per_s_per_run"], r["read_peak_bytes_per_s_per_run"]
want(len(tp) == 3 and len(rp) == 3 and all(p >= s for p, s in zip(tp + rp, bw + rd)), "a run's peak at least its sustained rate")
want(abs(r["triad_peak_bytes_per_s"] - sorted(tp)[1]) <= 1 and abs(r["read_peak_bytes_per_s"] - sorted(rp)[1]) <= 1, "median peaks")
want(abs(r["tg_fraction_of_peak_bound"] - sorted(t * r["weight_bytes_per_token"] / b for t, b in zip(tg, tp))[1]) <= 2e-3, "fraction of peak")
want(abs(r["tg_fraction_of_read_peak"] - sorted(t * r["weight_bytes_per_token"] / b for t, b in zip(tg, rp))[1]) <= 2e-3, "fraction of read peak")
want(r["weights_huge_page_fraction"] == -1 or 0 <= r["weights_huge_page_fraction"] <= 1, "huge-page fraction")
want(r["kv_bytes"] == kv, f"kv_bytes {r['kv_bytes']} != {kv}")
want(r["mapped_bytes"] == os.path.getsize(sys.argv[2]), "mapped_bytes = file size")
want(r["peak_rss_bytes"] >= r["mapped_bytes"], "peak RSS below the mapped file")
want(r["peak_rss_bytes"] < 1e9, "peak RSS of a 1 MB model under 1 GB (the triad's arrays not counted)")
want(abs(r["memory_ratio"] - r["peak_rss_bytes"] / (r["mapped_bytes"] + r["kv_bytes"])) <= 1e-3 * r["memory_ratio"], "memory ratio")
if bad:
    print(json.dumps(r, indent=1)); print("wrong:", bad); sys.exit(1)
EOF
else
    echo "FAIL bench --json figures agree with the model file and with each other"
    sed 's/^/    /' "$TMP/bench.err" | tail -10
fi
check_fails "bench names a missing model" "no-such-model" $LLMOPS bench -m "$TMP/no-such-model.gguf" -p 8 -n 4
check_fails "bench rejects a zero prompt length" "positive" $LLMOPS bench -m "$MODEL" -p 0
check "bench --batch 16 evaluates the prompt in passes of 16 tokens" bash -c "
    $LLMOPS bench -m $MODEL -p 48 -n 4 --reps 1 --threads 1 --batch 16 --json | grep -q '\"n_batch\": 16,'"
check_fails "bench rejects a negative --batch" "not negative" $LLMOPS bench -m "$MODEL" --batch -1
check_fails "bench rejects more than 64 runs" "--reps 1 to 64" $LLMOPS bench -m "$MODEL" --reps 65
