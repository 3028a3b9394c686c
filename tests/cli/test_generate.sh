# generate / perplexity / embed from the command line. The expected greedy story is
# the continuation the independent PyTorch reference (tests/oracle/torch_ref.py)
# produces for stories260K from BOS.
. "$(dirname "$0")/lib.sh"

M=models/stories260K/stories260K.bin
WANT="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
check "greedy generation reproduces the reference story" sh -c \
    "$LLMOPS generate -m $M --temp 0 -n 40 2>/dev/null | head -1 | grep -qF '$WANT'"
$LLMOPS convert $M "$TMP/s16.gguf" --type f16 2>/dev/null
check "the f16 GGUF tells the same story" sh -c \
    "$LLMOPS generate -m '$TMP/s16.gguf' --temp 0 -n 40 -p 'Once upon a time' 2>/dev/null | head -1 | grep -qF '$WANT'"
check "timings go to stderr" sh -c \
    "$LLMOPS generate -m $M -n 8 2>&1 >/dev/null | grep -q 'generation: 8 tokens'"
check "a seed makes sampling repeatable" sh -c \
    "a=\$($LLMOPS generate -m $M --seed 3 -n 30 2>/dev/null); b=\$($LLMOPS generate -m $M --seed 3 -n 30 2>/dev/null); test \"\$a\" = \"\$b\""
check "--stop ends the text before the stop string" sh -c \
    "out=\$($LLMOPS generate -m $M --temp 0 -n 60 --stop Lily 2>/dev/null); test \"\$out\" = 'Once upon a time, there was a little girl named '"
printf '[{"role": "user", "content": "Tell me a story."}]' >"$TMP/chat.json"
check "--chat renders the messages with a named template" sh -c \
    "$LLMOPS generate -m $M --chat '$TMP/chat.json' --chat-template chatml -n 8 2>&1 | grep -q 'prompt: '"
check_fails "--chat without a template says how to pass one" "--chat-template" \
    $LLMOPS generate -m $M --chat "$TMP/chat.json" -n 4
check_fails "a missing model is named" "no such file" $LLMOPS generate -m "$TMP/none.gguf" -n 4
check_fails "a bad number is a usage error" "is not a number" $LLMOPS generate -m $M --temp hot
head -c 6000 "$ASSETS/text/tinystories/tinystories_sample.txt" >"$TMP/ts.txt" 2>/dev/null || printf 'Once upon a time there was a girl. %.0s' $(seq 200) >"$TMP/ts.txt"
check "perplexity prints one number, the same for the checkpoint and its GGUF" sh -c \
    "a=\$($LLMOPS perplexity -m $M -f '$TMP/ts.txt' --ctx 64 2>/dev/null); $LLMOPS convert $M '$TMP/s32.gguf' >/dev/null 2>&1; b=\$($LLMOPS perplexity -m '$TMP/s32.gguf' -f '$TMP/ts.txt' --ctx 64 2>/dev/null); echo \"\$a\" | grep -Eq '^perplexity [0-9]+\.[0-9]+$' && test \"\$a\" = \"\$b\""
check_fails "embed refuses a decoder model" "not an embedding" $LLMOPS embed -m $M -p hello
if $PY -c 'import torch' 2>/dev/null; then
    $PY tests/oracle/make_random_model.py --arch bert --out "$TMP/bert" --size tiny --seed 1 >/dev/null
    check "embed prints one unit vector per input line" sh -c \
        "printf 'hello world\nsecond line\n' >'$TMP/lines.txt'; $LLMOPS embed -m '$TMP/bert' -f '$TMP/lines.txt' | $PY -c 'import sys,math; rows=[list(map(float,l.split())) for l in sys.stdin]; assert len(rows)==2; assert all(abs(math.sqrt(sum(x*x for x in r))-1)<1e-4 for r in rows)'"
else
    skip "embed" "python3-torch missing (the random BERT model is made by tests/oracle)"
fi
