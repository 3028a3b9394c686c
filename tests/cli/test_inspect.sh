# `llmops inspect --json --hash` must describe every file exactly as the independent
# Python reader (tests/oracle/modeldump.py) does: header, metadata, tensor table, bytes.
. "$(dirname "$0")/lib.sh"

agree() { # agree NAME FILE
    local f=$2
    if ! $LLMOPS inspect --json --hash "$f" >"$TMP/ours.json" 2>"$TMP/inspect.err"; then
        echo "FAIL $1"; sed 's/^/    /' "$TMP/inspect.err"; return
    fi
    check "$1" $PY tests/oracle/modeldump.py "$f" --against "$TMP/ours.json"
}

n=0
for f in "$ASSETS"/tokenizers/llama.cpp-vocab/*.gguf; do
    [ -e "$f" ] || continue
    agree "inspect agrees with the oracle: $(basename "$f")" "$f"
    n=$((n + 1))
done
[ $n -gt 0 ] || skip "inspect of llama.cpp vocab files" "tokenizers/llama.cpp-vocab not in ../shared/assets"

if need_asset hf/tiny-random-gpt2/model.safetensors; then
    agree "inspect agrees with the oracle: tiny-random-gpt2 safetensors" "$ASSETS/hf/tiny-random-gpt2/model.safetensors"
    check "inspect a Hugging Face folder" $LLMOPS inspect "$ASSETS/hf/tiny-random-gpt2"
    check "hf folder json names the architecture" sh -c \
        "$LLMOPS inspect --json '$ASSETS/hf/tiny-random-gpt2' | grep -q '\"family\": \"gpt2\"'"
fi

$LLMOPS convert models/stories260K/stories260K.bin "$TMP/s.gguf" --type f16 2>/dev/null
agree "inspect agrees with the oracle: converted stories260K" "$TMP/s.gguf"
check "inspect text output of a llama2.c checkpoint" sh -c \
    "$LLMOPS inspect models/stories260K/stories260K.bin | grep -q 'dim 64, hidden 172, 5 layers, 8 heads (4 KV)'"
check "inspect --no-tensors" sh -c "! $LLMOPS inspect --no-tensors '$TMP/s.gguf' | grep -q blk.0.attn_q"

for c in inspect convert version; do
    check "llmops $c --help" $LLMOPS $c --help
done
check "llmops --help lists the commands" sh -c "$LLMOPS --help | grep -q convert"
check_fails "unknown command is an error" "unknown command" $LLMOPS frobnicate
check_fails "inspect of a missing file" "no such file" $LLMOPS inspect "$TMP/nope.gguf"
printf 'GGUF\003\000\000\000' >"$TMP/short.gguf"
check_fails "inspect of a truncated gguf gives the offset" "offset 8" $LLMOPS inspect "$TMP/short.gguf"
