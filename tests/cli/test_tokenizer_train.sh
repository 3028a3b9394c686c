# `llmops tokenizer train`: the merges and vocabulary of the Stanford CS336 assignment-1
# reference, the written files read back by `llmops tokenize`, and the GGUF checked by the
# independent Python reader (tests/oracle/modeldump.py).
. "$(dirname "$0")/lib.sh"

CS=text/cs336-bpe
OUT="$TMP/bpe500"

check "tokenizer train --help" $LLMOPS tokenizer train --help

if need_asset $CS/corpus.en && need_asset $CS/train-bpe-reference-merges.txt; then
    rm -rf "$OUT"
    check "train corpus.en to 500 ids" $LLMOPS tokenizer train --corpus "$ASSETS/$CS/corpus.en" \
        --vocab-size 500 --special '<|endoftext|>' --out "$OUT"
    check "merges.txt starts with #version: 0.2" grep -qx '#version: 0.2' <(head -1 "$OUT/merges.txt")
    check "merges equal the CS336 reference" \
        diff <(grep -v '^#version' "$OUT/merges.txt") <(grep -v '^#version' "$ASSETS/$CS/train-bpe-reference-merges.txt")
    check "vocab.json equals the CS336 reference" $PY -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
sys.exit(0 if a == b else "vocab.json differs from the reference")' "$OUT/vocab.json" "$ASSETS/$CS/train-bpe-reference-vocab.json"
    check "tokenizer.json is a BPE model with ByteLevel pre-tokenizer and decoder" $PY -c '
import json, sys
t = json.load(open(sys.argv[1]))
assert t["model"]["type"] == "BPE" and len(t["model"]["vocab"]) == 500 and len(t["model"]["merges"]) == 243
assert t["pre_tokenizer"]["type"] == "ByteLevel" and t["decoder"]["type"] == "ByteLevel"
assert t["added_tokens"][0]["content"] == "<|endoftext|>" and t["added_tokens"][0]["special"] is True
c = json.load(open(sys.argv[2]))
assert c["tokenizer_class"] == "GPT2TokenizerFast" and c["eos_token"] == "<|endoftext|>"' \
        "$OUT/tokenizer.json" "$OUT/tokenizer_config.json"
    if $LLMOPS inspect --json --hash "$OUT/tokenizer.gguf" >"$TMP/bpe_ours.json" 2>"$TMP/bpe_inspect.err"; then
        check "tokenizer.gguf reads the same in the Python oracle" \
            $PY tests/oracle/modeldump.py "$OUT/tokenizer.gguf" --against "$TMP/bpe_ours.json"
    else
        echo "FAIL llmops inspect tokenizer.gguf"; sed 's/^/    /' "$TMP/bpe_inspect.err"
    fi
    for f in tokenizer.gguf tokenizer.json vocab.json; do
        $LLMOPS tokenize -m "$OUT/$f" --ids --parse-special -p 'the steel ingot mould<|endoftext|>' >"$TMP/ids_$f" 2>&1
    done
    check "tokenize: gguf, tokenizer.json and vocab.json agree" \
        bash -c "cmp '$TMP/ids_tokenizer.gguf' '$TMP/ids_tokenizer.json' && cmp '$TMP/ids_tokenizer.gguf' '$TMP/ids_vocab.json'"
    check "tokenize: <|endoftext|> is id 0" grep -q ' 0$' "$TMP/ids_tokenizer.gguf"
    check "detokenize round-trips the text" bash -c \
        "test \"\$($LLMOPS detokenize -m '$OUT/tokenizer.gguf' \$(cat '$TMP/ids_tokenizer.gguf'))\" = 'the steel ingot mould<|endoftext|>'"
else
    skip "tokenizer train on corpus.en" "$CS not in ../shared/assets"
fi

# errors name what and where
printf 'some text to learn from\n' >"$TMP/small.txt"
check_fails "a vocab size below 256 + specials is refused" "below the 258 ids" \
    $LLMOPS tokenizer train --corpus "$TMP/small.txt" --vocab-size 257 --special '<a>' '<b>' --out "$TMP/bad"
check_fails "a missing corpus file is named" "$TMP/missing.txt" \
    $LLMOPS tokenizer train --corpus "$TMP/small.txt" "$TMP/missing.txt" --vocab-size 300 --out "$TMP/bad"
: >"$TMP/empty.txt"
check_fails "an empty corpus is refused" "empty corpus" \
    $LLMOPS tokenizer train --corpus "$TMP/empty.txt" --vocab-size 300 --out "$TMP/bad"
check_fails "--out is required" "--out DIR is required" \
    $LLMOPS tokenizer train --corpus "$TMP/small.txt" --vocab-size 300
check_fails "an unknown subcommand is refused" "unknown subcommand" $LLMOPS tokenizer untrain
