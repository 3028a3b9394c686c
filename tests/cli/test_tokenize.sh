# The tokenize/detokenize command-line contract, checked against llama.cpp's
# conformance vectors (tokenized by the reference tokenizers).
. "$(dirname "$0")/lib.sh"

V=$ASSETS/tokenizers/llama.cpp-vocab
if [ -e "$V/ggml-vocab-gpt-2.gguf" ]; then
    for vocab in ggml-vocab-gpt-2.gguf ggml-vocab-llama-spm.gguf ggml-vocab-bert-bge.gguf; do
        # the 12th test string of each file ("Hello world") and its expected ids
        $PY - "$V/$vocab" "$TMP/in.txt" "$TMP/want.txt" <<'PYEOF'
import sys
inp = open(sys.argv[1] + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
out = open(sys.argv[1] + ".out").read().split("\n")
open(sys.argv[2], "w", encoding="utf-8").write(inp[18])
open(sys.argv[3], "w").write(out[18].strip() + "\n")
PYEOF
        check "tokenize --ids -f matches the reference ($vocab)" sh -c \
            "$LLMOPS tokenize -m '$V/$vocab' --no-bos --ids -f '$TMP/in.txt' | diff - '$TMP/want.txt'"
    done
    check "ids are one line separated by single spaces" sh -c \
        "$LLMOPS tokenize -m '$V/ggml-vocab-gpt-2.gguf' --ids -p 'Hello world' | grep -qx '15496 995'"
    check "detokenize gives the text back" sh -c \
        "test \"\$($LLMOPS detokenize -m '$V/ggml-vocab-gpt-2.gguf' 15496 995)\" = 'Hello world'"
    check "--parse-special matches special tokens written in the text" sh -c \
        "$LLMOPS tokenize -m '$V/ggml-vocab-llama-spm.gguf' --ids --no-bos --parse-special -p '<s>' | grep -qx '1'"
    check "without --no-bos the model's BOS comes first" sh -c \
        "$LLMOPS tokenize -m '$V/ggml-vocab-llama-spm.gguf' --ids -p 'Hi' | grep -q '^1 '"
else
    skip "tokenize against conformance vectors" "tokenizers/llama.cpp-vocab not in ../shared/assets"
fi
check "tokenize reads the bundled llama2.c vocabulary" sh -c \
    "$LLMOPS tokenize -m models/stories260K/tok512.bin --ids -p 'Once upon a time' | grep -qx '1 403 407 261 378'"
check_fails "detokenize rejects an id outside the vocabulary" "outside the vocabulary" \
    $LLMOPS detokenize -m models/stories260K/tok512.bin 9999
check_fails "tokenize names a missing vocabulary" "no such file" $LLMOPS tokenize -m "$TMP/none.gguf" -p x
check_fails "tokenize needs a text" "give exactly one of" $LLMOPS tokenize -m models/stories260K/tok512.bin
