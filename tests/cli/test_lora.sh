# LoRA adapters from the command line: generate --lora/--lora-scale, merge, adapter-convert.
# The random model and the PEFT adapter are written by the independent Python side
# (tests/oracle/make_random_model.py, torch_train_ref.py make-adapter); the numbers themselves are
# checked against PyTorch in tests/train/test_adapter.c, so here greedy texts are compared.
. "$(dirname "$0")/lib.sh"

if ! $PY -c 'import torch, numpy' 2>/dev/null; then
    skip "lora" "python3-torch missing (the random model and adapter come from tests/oracle)"
    exit 0
fi
M="$TMP/lora_model" A="$TMP/lora_peft"
$PY tests/oracle/make_random_model.py --arch llama --out "$M" --size tiny --seed 4 >/dev/null
$PY tests/oracle/torch_train_ref.py make-adapter --model "$M" --out "$A" --rank 4 --alpha 64 \
    --targets q,k,v,o,gate,up,down --seed 1 >/dev/null
gen() { local m=$1; shift; $LLMOPS generate -m "$m" --temp 0 -n 16 -p 'Once upon a time' "$@" 2>/dev/null; }
base=$(gen "$M")
with=$(gen "$M" --lora "$A")

check "--lora changes the greedy text" test -n "$with" -a "$with" != "$base"
check "--lora-scale 0 is the base model" test "$(gen "$M" --lora "$A" --lora-scale 0)" = "$base"
check "two adapters at half scale each equal one at full scale" \
    test "$(gen "$M" --lora "$A" --lora-scale 0.5 --lora "$A" --lora-scale 0.5)" = "$with"
$LLMOPS merge -m "$M" --lora "$A" -o "$TMP/merged.gguf" 2>/dev/null
check "a merged GGUF tells what base + adapter tell" test "$(gen "$TMP/merged.gguf")" = "$with"
$LLMOPS merge -m "$M" --lora "$A" -o "$TMP/merged_hf" 2>/dev/null
check "a merged Hugging Face folder too" test "$(gen "$TMP/merged_hf")" = "$with"
$LLMOPS convert "$M" "$TMP/m.gguf" >/dev/null 2>&1
$LLMOPS adapter-convert -m "$M" "$A" -o "$TMP/a.gguf" 2>/dev/null
check "the adapter as GGUF LoRA on the GGUF model gives the same text" test "$(gen "$TMP/m.gguf" --lora "$TMP/a.gguf")" = "$with"
check "the PEFT adapter on the GGUF model too" test "$(gen "$TMP/m.gguf" --lora "$A")" = "$with"
$LLMOPS adapter-convert -m "$TMP/m.gguf" "$TMP/a.gguf" -o "$TMP/a_back" 2>/dev/null
check "GGUF LoRA back to PEFT gives the same text" test "$(gen "$M" --lora "$TMP/a_back")" = "$with"

mkdir -p "$TMP/bad_rank"
cp "$A/adapter_model.safetensors" "$TMP/bad_rank/"
sed 's/"r": 4/"r": 8/' "$A/adapter_config.json" >"$TMP/bad_rank/adapter_config.json"
check_fails "a rank that differs from the config names the tensor" "layers.0.mlp.down_proj.lora_A.weight' has rank 4, the config says r = 8" \
    $LLMOPS generate -m "$M" --lora "$TMP/bad_rank" -n 4
check_fails "a model folder is not an adapter" "adapter_config.json" $LLMOPS generate -m "$M" --lora "$M" -n 4
check_fails "--lora-scale needs a preceding --lora" "preceding --lora" $LLMOPS generate -m "$M" --lora-scale 2 -n 4
check_fails "merge needs an adapter" "--lora" $LLMOPS merge -m "$M" -o "$TMP/x.gguf"
