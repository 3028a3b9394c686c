# llmops finetune end to end: a LoRA run lowers the validation loss and exports adapters;
# a resumed run (clean stop or kill -9) ends with the same weights as an uninterrupted one;
# mpirun -np 2 equals one process with the same global batch; broken configs and data give
# file:line errors. Weights are compared with the independent Python safetensors reader.
. "$(dirname "$0")/lib.sh"

ROOT=$(pwd)
M=$ROOT/models/stories260K/stories260K.bin
D=$ROOT/data/wikisql-sample
W=$TMP/ft
mkdir -p "$W"

# cfg NAME STEPS EXTRA_TRAINING_LINES... — writes $W/NAME.yaml (a small, fast LoRA run)
cfg() {
    local name=$1 steps=$2 extra=$3 method=${4:-lora}
    cat >"$W/$name.yaml" <<EOF
model:
  path: $M
method: $method
lora:
  rank: 4
  alpha: 8
  targets: [q, v, down]
data:
  train: [$D/train.jsonl]
  validation: [$D/valid.jsonl]
  seq_len: 128
training:
  max_steps: $steps
  batch_size: 4
  lr: 3e-3
  warmup_steps: 2
  threads: 1
$extra
eval:
  every: 0
  max_rows: 16
checkpoint:
  every: 3
output:
  dir: $W/$name
EOF
}

# same_weights A B TOL — every tensor of two safetensors files within TOL (max abs diff)
same_weights() {
    $PY - "$1" "$2" "$3" <<'EOF'
import sys
sys.path.insert(0, "tests/oracle")
import numpy as np
from modelfile import SafetensorsFile
def read_safetensors(path):
    with SafetensorsFile(path) as f:
        return {n: f.tensor_array(n) for n in f.names()}
a, b, tol = read_safetensors(sys.argv[1]), read_safetensors(sys.argv[2]), float(sys.argv[3])
assert set(a) == set(b), (sorted(a), sorted(b))
worst = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) for k in a)
assert worst <= tol, f"max abs diff {worst} > {tol}"
# the run must have moved the weights at all (a LoRA B starts at zero)
assert any(np.any(a[k] != 0) for k in a if k.endswith(".lora_b"))
print("max abs diff", worst)
EOF
}

cfg base 8 ""
check "a LoRA run lowers the validation loss and reports it" sh -c \
    "$LLMOPS finetune '$W/base.yaml' --json --quiet >'$W/base.json' && $PY -c \"
import json; r = json.load(open('$W/base.json'))
assert r['steps'] == 8, r
assert r['val_loss_last'] < r['val_loss_first'] - 0.3, r
\""
sed '/validation:/d' "$W/base.yaml" | sed "s#dir: .*#dir: $W/noval#; s#max_steps: 8#max_steps: 2#" >"$W/noval.yaml"
check "without a validation split the losses never measured are null in --json and metrics.jsonl" sh -c \
    "$LLMOPS finetune '$W/noval.yaml' --json --quiet >'$W/noval.json' && $PY -c \"
import json, math; r = json.load(open('$W/noval.json'))
assert r['steps'] == 2 and math.isfinite(r['train_loss']), r
assert r['val_loss_first'] is None and r['val_loss_last'] is None and r['best_val_loss'] is None, r
m = [json.loads(l) for l in open('$W/noval/metrics.jsonl')]
assert m[-1]['event'] == 'done' and m[-1]['val_loss_last'] is None, m[-1]
assert not any(e['event'] == 'eval' for e in m), m
\""
check "the run directory holds PEFT and GGUF adapters, checkpoints and metrics" sh -c \
    "test -f '$W/base/adapter/adapter_config.json' && test -f '$W/base/adapter/adapter_model.safetensors' && \
     test -f '$W/base/adapter.gguf' && test -f '$W/base/checkpoints/latest' && \
     test -f '$W/base/checkpoints/step-00000008/optimizer.safetensors' && test -f '$W/base/config.yaml'"
check "metrics.jsonl has a line per step with loss, lr, tokens/s and memory" $PY -c "
import json
rows = [json.loads(l) for l in open('$W/base/metrics.jsonl')]
train = [r for r in rows if r['event'] == 'train']
assert [r['step'] for r in train] == list(range(1, 9)), train
for r in train:
    assert r['loss'] > 0 and r['lr'] > 0 and r['tokens_per_s'] > 0 and r['peak_rss_mib'] > 0, r
ev = [r for r in rows if r['event'] == 'eval']
assert [r['step'] for r in ev] == [0, 8], ev
assert rows[-1]['event'] == 'done'
"
check "the adapter's PEFT names and shapes are what PEFT expects" $PY -c "
import sys, json
sys.path.insert(0, 'tests/oracle')
from modelfile import SafetensorsFile
f = SafetensorsFile('$W/base/adapter/adapter_model.safetensors')
t = {n: f.tensor_array(n) for n in f.names()}
c = json.load(open('$W/base/adapter/adapter_config.json'))
assert c['r'] == 4 and c['lora_alpha'] == 8 and c['peft_type'] == 'LORA', c
assert sorted(c['target_modules']) == ['down_proj', 'q_proj', 'v_proj'], c
a = t['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']
b = t['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight']
assert a.shape == (4, 64) and b.shape == (64, 4), (a.shape, b.shape)
assert t['base_model.model.model.layers.4.mlp.down_proj.lora_A.weight'].shape == (4, 172)
assert len(t) == 5 * 3 * 2, len(t)
"
check "generate runs with the exported adapter" sh -c \
    "$LLMOPS generate -m '$M' --lora '$W/base/adapter' --temp 0 -n 16 -p 'table: ' 2>/dev/null | grep -q ."

head -c 3000 "$D/valid.jsonl" >"$W/valid.txt"
check "the adapter lowers perplexity on held-out text; its merged model scores the same" sh -c \
    "$LLMOPS merge -m '$M' --lora '$W/base/adapter' -o '$W/merged.gguf' >/dev/null 2>&1 && \
     p0=\$($LLMOPS perplexity -m '$M' -f '$W/valid.txt' --ctx 128 2>/dev/null | cut -d' ' -f2) && \
     p1=\$($LLMOPS perplexity -m '$M' --lora '$W/base/adapter' -f '$W/valid.txt' --ctx 128 2>/dev/null | cut -d' ' -f2) && \
     p2=\$($LLMOPS perplexity -m '$W/merged.gguf' -f '$W/valid.txt' --ctx 128 2>/dev/null | cut -d' ' -f2) && \
     $PY -c \"import sys; p0, p1, p2 = map(float, sys.argv[1:]); assert p1 < 0.5 * p0 and abs(p1 - p2) <= 1e-3 * p1, (p0, p1, p2)\" \$p0 \$p1 \$p2"

# resume: stop after 4 steps, resume to 8: the same weights as the uninterrupted run
cfg stop 8 ""
check "a run stopped after 4 of 8 steps resumes and finishes" sh -c \
    "$LLMOPS finetune '$W/stop.yaml' --quiet --stop-after 4 && test ! -f '$W/stop/adapter.gguf' && \
     $LLMOPS finetune '$W/stop.yaml' --quiet --resume '$W/stop' && test -f '$W/stop/adapter.gguf'"
check "the resumed run ends with the uninterrupted run's weights" same_weights \
    "$W/base/checkpoints/step-00000008/trainable.safetensors" "$W/stop/checkpoints/step-00000008/trainable.safetensors" 1e-6
check "the resumed run's metrics have each step once" $PY -c "
import json
rows = [json.loads(l) for l in open('$W/stop/metrics.jsonl')]
assert [r['step'] for r in rows if r['event'] == 'train'] == list(range(1, 9)), rows
"
check_fails "a finished run directory is not overwritten by a fresh start" "--resume" \
    $LLMOPS finetune "$W/stop.yaml" --quiet

# kill -9 in the middle of training, then resume
cfg kill 8 ""
$LLMOPS finetune "$W/kill.yaml" --quiet >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do
    [ -f "$W/kill/checkpoints/latest" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
killed_at=$(cat "$W/kill/checkpoints/latest" 2>/dev/null)
if [ -z "$killed_at" ]; then
    echo "FAIL kill -9: no checkpoint appeared before the run ended"
elif $LLMOPS finetune "$W/kill.yaml" --quiet --resume "$W/kill" >"$TMP/kr.log" 2>&1 &&
    same_weights "$W/base/checkpoints/step-00000008/trainable.safetensors" \
        "$W/kill/checkpoints/step-00000008/trainable.safetensors" 1e-6 >>"$TMP/kr.log" 2>&1; then
    echo "ok   a run killed with SIGKILL (latest $killed_at) resumes to the uninterrupted weights"
else
    echo "FAIL a run killed with SIGKILL (latest $killed_at) resumes to the uninterrupted weights"
    sed 's/^/    /' "$TMP/kr.log" | tail -15
fi

# data parallel: 2 processes × batch 2 = 1 process × batch 2 × grad_accum 2
if command -v mpirun >/dev/null 2>&1; then
    cfg one 4 "  grad_accum: 2"
    sed -i 's/batch_size: 4/batch_size: 2/' "$W/one.yaml"
    cfg two 4 ""
    sed -i 's/batch_size: 4/batch_size: 2/' "$W/two.yaml"
    if $LLMOPS finetune "$W/one.yaml" --quiet >"$TMP/mpi.log" 2>&1 &&
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 \
            timeout 300 mpirun --oversubscribe --mca btl self,vader -np 2 $LLMOPS finetune "$W/two.yaml" --quiet >>"$TMP/mpi.log" 2>&1 &&
        same_weights "$W/one/checkpoints/step-00000004/trainable.safetensors" \
            "$W/two/checkpoints/step-00000004/trainable.safetensors" 1e-5 >>"$TMP/mpi.log" 2>&1; then
        echo "ok   mpirun -np 2 trains the same weights as one process with the same global batch"
    else
        echo "FAIL mpirun -np 2 trains the same weights as one process with the same global batch"
        sed 's/^/    /' "$TMP/mpi.log" | tail -15
    fi
    # what a multi-node launch uses: a hostfile and the TCP transport (here over loopback)
    cfg tcp 4 ""
    sed -i 's/batch_size: 4/batch_size: 2/' "$W/tcp.yaml"
    echo "localhost slots=2" >"$W/hosts"
    if OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ASAN_OPTIONS=detect_leaks=0 \
        timeout 300 mpirun --hostfile "$W/hosts" --mca btl self,tcp --mca btl_tcp_if_include lo -np 2 \
        $LLMOPS finetune "$W/tcp.yaml" --quiet >"$TMP/mpi-tcp.log" 2>&1 &&
        same_weights "$W/one/checkpoints/step-00000004/trainable.safetensors" \
            "$W/tcp/checkpoints/step-00000004/trainable.safetensors" 1e-5 >>"$TMP/mpi-tcp.log" 2>&1; then
        echo "ok   mpirun --hostfile over TCP trains the same weights as one process"
    else
        echo "FAIL mpirun --hostfile over TCP trains the same weights as one process"
        sed 's/^/    /' "$TMP/mpi-tcp.log" | tail -15
    fi
else
    skip "mpirun -np 2 equals one process" "mpirun is not installed (scripts/setup.sh installs openmpi-bin)"
fi

# QLoRA and full fine-tuning run and learn
cfg q 6 "" qlora
check "QLoRA (base in Q8_0) lowers the validation loss" sh -c \
    "$LLMOPS finetune '$W/q.yaml' --json --quiet | $PY -c \"
import json, sys; r = json.load(sys.stdin); assert r['val_loss_last'] < r['val_loss_first'] - 0.2, r\""
cfg full 6 "" full
sed -i 's/^  dir: .*/  dir: '"$(printf '%s' "$W/full" | sed 's/[\/&]/\\&/g')"'\n  export: [model_gguf]/' "$W/full.yaml"
check "full fine-tuning lowers the validation loss and writes a GGUF the engine runs" sh -c \
    "$LLMOPS finetune '$W/full.yaml' --json --quiet | $PY -c \"
import json, sys; r = json.load(sys.stdin); assert r['val_loss_last'] < r['val_loss_first'] - 0.3, r\" && \
     $LLMOPS generate -m '$W/full/model.gguf' --temp 0 -n 8 -p 'table: ' >/dev/null 2>&1"

# from scratch: a tiny Llama defined in the YAML, exported as GGUF and as a Hugging Face folder
cat >"$W/scratch.yaml" <<EOF
model:
  tokenizer: $ROOT/models/stories260K/tok512.bin
method: scratch
architecture:
  family: llama
  hidden_size: 32
  layers: 2
  heads: 4
  kv_heads: 2
  context: 128
data:
  train: [$D/train.jsonl]
  validation: [$D/valid.jsonl]
  seq_len: 64
  pack: true
training:
  max_steps: 12
  batch_size: 4
  lr: 1e-2
  threads: 1
eval:
  max_rows: 16
output:
  dir: $W/scratch
  export: [model_gguf, model_hf]
EOF
check "a model trained from scratch learns and runs in the engine from GGUF and HF exports" sh -c \
    "$LLMOPS finetune '$W/scratch.yaml' --json --quiet | $PY -c \"
import json, sys; r = json.load(sys.stdin); assert r['val_loss_last'] < r['val_loss_first'] - 0.5, r\" && \
     a=\$($LLMOPS generate -m '$W/scratch/model.gguf' --temp 0 -n 12 -p 'table: ' 2>/dev/null) && \
     b=\$($LLMOPS generate -m '$W/scratch/model-hf' --temp 0 -n 12 -p 'table: ' 2>/dev/null) && \
     test -n \"\$a\" && test \"\$a\" = \"\$b\""

# early stopping: with lr 0 the validation loss never improves after the first pass
cfg early 50 ""
sed -i -e 's/lr: 3e-3/lr: 0.0/' -e 's/  every: 0/  every: 1\n  early_stopping_patience: 2/' "$W/early.yaml"
check "early stopping ends a run whose validation loss stops improving" sh -c \
    "$LLMOPS finetune '$W/early.yaml' --json --quiet | $PY -c \"
import json, sys; r = json.load(sys.stdin); assert r['early_stopped'] and r['steps'] == 2, r\""

# broken configs and data
printf 'model:\n  path: %s\ndata:\n  train: [%s/train.jsonl]\ntraining:\n  lr: fast\noutput:\n  dir: %s/x\n' "$M" "$D" "$W" >"$W/bad1.yaml"
check_fails "a wrong type names file:line:column and the key" "bad1.yaml:6:7: training.lr" \
    $LLMOPS finetune "$W/bad1.yaml"
printf 'model:\n  path: %s\ndata:\n  train: [%s/train.jsonl]\n  sequence_length: 64\noutput:\n  dir: %s/x\n' "$M" "$D" "$W" >"$W/bad2.yaml"
check_fails "an unknown key is named with its position" "bad2.yaml:5:3" $LLMOPS finetune "$W/bad2.yaml"
printf 'model:\n  path: %s\nlora:\n  targets: [q, wq]\ndata:\n  train: [%s/train.jsonl]\noutput:\n  dir: %s/x\n' "$M" "$D" "$W" >"$W/bad3.yaml"
check_fails "an unknown LoRA target is named" "unknown LoRA target module 'wq'" $LLMOPS finetune "$W/bad3.yaml"
printf 'model:\n  path: %s\ndata:\n  train: [%s/none.jsonl]\noutput:\n  dir: %s/x\n' "$M" "$W" "$W" >"$W/bad4.yaml"
check_fails "a missing data file is named" "none.jsonl" $LLMOPS finetune "$W/bad4.yaml"
printf '{"text": "fine"}\n{"text": "also fine"}\n{"text": broken}\n' >"$W/broken.jsonl"
printf 'model:\n  path: %s\ndata:\n  train: [%s/broken.jsonl]\n  bad_rows: fail\noutput:\n  dir: %s/x\n' "$M" "$W" "$W" >"$W/bad5.yaml"
check_fails "a bad record with bad_rows: fail names file and line" "broken.jsonl:3" $LLMOPS finetune "$W/bad5.yaml"
check "--docs lists every key with its default" sh -c \
    "$LLMOPS finetune --docs | grep -q 'training.lr' && $LLMOPS finetune --docs | grep -q 'lora.rank'"
check "the example configs are valid" sh -c \
    "for f in examples/*.yaml; do $LLMOPS finetune --check \$f || exit 1; done"
