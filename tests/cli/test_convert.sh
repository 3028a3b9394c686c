# Conversion tests: what `llmops convert` writes is checked by independent Python
# readers (tests/oracle) that follow llama.cpp's conventions, not by our own C code.
. "$(dirname "$0")/lib.sh"

S260=models/stories260K/stories260K.bin
TOK=models/stories260K/tok512.bin
GPT2=$ASSETS/hf/tiny-random-gpt2

for t in f32 f16 bf16; do
    check "convert llama2.c -> gguf $t" $LLMOPS convert $S260 "$TMP/s_$t.gguf" --type $t
    check "llama2.c gguf $t agrees with the checkpoint (oracle)" \
        $PY tests/oracle/check_llama2c_gguf.py --gguf "$TMP/s_$t.gguf" --ckpt $S260 --tok $TOK --type $t
    rm -rf "$TMP/s_hf_$t"
    check "export llama gguf $t -> hf" $LLMOPS convert "$TMP/s_$t.gguf" "$TMP/s_hf_$t"
    check "llama hf export $t is faithful (oracle)" \
        $PY tests/oracle/check_hf_export.py --gguf "$TMP/s_$t.gguf" --out "$TMP/s_hf_$t"
done

if need_asset hf/tiny-random-gpt2/model.safetensors; then
    for t in f32 f16 bf16; do
        check "convert hf gpt2 -> gguf $t" $LLMOPS convert "$GPT2" "$TMP/g_$t.gguf" --type $t
        check "gpt2 gguf $t agrees with the hf folder (oracle)" \
            $PY tests/oracle/check_gpt2_gguf.py --gguf "$TMP/g_$t.gguf" --hf "$GPT2" --type $t
        rm -rf "$TMP/g_hf_$t"
        check "export gpt2 gguf $t -> hf" $LLMOPS convert "$TMP/g_$t.gguf" "$TMP/g_hf_$t"
        check "gpt2 hf export $t is faithful (oracle)" \
            $PY tests/oracle/check_hf_export.py --gguf "$TMP/g_$t.gguf" --out "$TMP/g_hf_$t"
    done
    # hf -> gguf -> hf -> gguf: the second GGUF holds the same tensors as the first
    cp "$GPT2"/tokenizer.json "$GPT2"/tokenizer_config.json "$TMP/g_hf_f32/"
    check "gpt2 hf -> gguf -> hf -> gguf round trip" $LLMOPS convert "$TMP/g_hf_f32" "$TMP/g_again.gguf"
    check "round-trip gguf tensors equal the first conversion" \
        $PY tests/oracle/compare_tensors.py "$TMP/g_f32.gguf" "$TMP/g_again.gguf"
else
    skip "gpt2 conversions" "hf/tiny-random-gpt2 not in ../shared/assets"
fi

# sharded export and re-import
rm -rf "$TMP/shards"
check "export into 3+ shards" $LLMOPS convert "$TMP/s_f32.gguf" "$TMP/shards" --max-shard-size 300000
check "shard files and index written" test -f "$TMP/shards/model.safetensors.index.json" -a \
    -f "$TMP/shards/model-00001-of-00004.safetensors"
check "sharded export is faithful (oracle)" $PY tests/oracle/check_hf_export.py --gguf "$TMP/s_f32.gguf" --out "$TMP/shards"
check "inspect reads the sharded folder" $LLMOPS inspect "$TMP/shards"

# gguf -> gguf type change keeps metadata and converts matrices
check "gguf f32 -> f16 rewrite" $LLMOPS convert "$TMP/s_f32.gguf" "$TMP/s_re16.gguf" --type f16
check "rewritten f16 equals a direct f16 conversion" \
    $PY tests/oracle/compare_tensors.py "$TMP/s_f16.gguf" "$TMP/s_re16.gguf"

# errors name what and where
printf 'not a model at all' >"$TMP/junk.bin"
check_fails "convert rejects an unknown input" "not a GGUF file" $LLMOPS convert "$TMP/junk.bin" "$TMP/x.gguf"
check_fails "convert reports a missing input" "no such file" $LLMOPS convert "$TMP/missing.bin" "$TMP/x.gguf"
check_fails "convert rejects a bad --type" "--type must be" $LLMOPS convert $S260 "$TMP/x.gguf" --type q4
mkdir -p "$TMP/novocab" && cp $S260 "$TMP/novocab/"
check_fails "llama2.c without a vocabulary says how to pass one" "--vocab" \
    $LLMOPS convert "$TMP/novocab/stories260K.bin" "$TMP/x.gguf"
check_fails "llama2.c to a non-gguf output is refused" "ending in .gguf" $LLMOPS convert $S260 "$TMP/outdir"
head -c 100000 "$TMP/s_f32.gguf" >"$TMP/trunc.gguf"
check_fails "truncated gguf names the tensor and offset" "run past the end" \
    $LLMOPS convert "$TMP/trunc.gguf" "$TMP/trunc_hf"
check "no partial output left behind" test ! -e "$TMP/x.gguf"
