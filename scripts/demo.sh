#!/usr/bin/env bash
# The README's main job on the embedded default: no server, no account, nothing
# outside this repository. Today's pipeline, on the bundled stories260K model:
#   llama2.c checkpoint -> inspect -> GGUF (f32, f16) -> inspect -> independent check
#   -> Hugging Face folder (safetensors + config.json) -> independent check
#   -> tokenize -> generate (greedy and sampled) -> evaluate (perplexity)
# Later issues grow it into fine-tune -> evaluate -> register -> serve.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# first N lines of a command's output (without SIGPIPE failing the pipeline under pipefail)
first() { local n=$1; shift; "$@" >"$OUT/.show"; head -n "$n" "$OUT/.show"; rm -f "$OUT/.show"; }

step "setup and build"
bash scripts/setup.sh
make -j"$(nproc)" >/dev/null
L=build/release/llmops
M=models/stories260K
mkdir -p "$OUT"

step "1. inspect the bundled llama2.c checkpoint"
$L inspect "$M/stories260K.bin"

step "2. convert it to GGUF (llama.cpp's names and keys), f32 and f16"
$L convert "$M/stories260K.bin" "$OUT/stories260K.f32.gguf" --type f32
$L convert "$M/stories260K.bin" "$OUT/stories260K.f16.gguf" --type f16

step "3. inspect the GGUF"
first 40 $L inspect --max-items 6 "$OUT/stories260K.f16.gguf"
echo "  ..."

step "4. check the GGUF with an independent reader (tests/oracle, Python + numpy)"
/usr/bin/python3 tests/oracle/check_llama2c_gguf.py --gguf "$OUT/stories260K.f16.gguf" \
    --ckpt "$M/stories260K.bin" --tok "$M/tok512.bin" --type f16

step "5. export the GGUF as a Hugging Face folder and check it"
rm -rf "$OUT/stories260K-hf"
$L convert "$OUT/stories260K.f32.gguf" "$OUT/stories260K-hf"
first 8 $L inspect "$OUT/stories260K-hf"
/usr/bin/python3 tests/oracle/check_hf_export.py --gguf "$OUT/stories260K.f32.gguf" --out "$OUT/stories260K-hf"

step "6. tokenize with the model's own SentencePiece vocabulary"
first 12 $L tokenize -m "$OUT/stories260K.f16.gguf" -p "Once upon a time, Lily met a cat."

step "7. generate: greedy from the f16 GGUF, then sampled (seeded) from the llama2.c file"
$L generate -m "$OUT/stories260K.f16.gguf" --temp 0 -n 96 -p "Once upon a time"
$L generate -m "$M/stories260K.bin" --temp 0.9 --top-p 0.9 --seed 42 -n 96 -p "Lily and Tom"

step "8. evaluate: perplexity of each file on a TinyStories-style text written here"
cat >"$OUT/eval.txt" <<'TXT'
Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.
One day, Lily saw a big red ball under a tree. She wanted to play with it, so she ran to get it.
Her mom said, "Be careful, Lily!" Lily smiled and said, "I will, mom." They played with the ball all day.
At the end of the day, Lily was tired but happy. She went home and had a warm bath and a good sleep.
Tom was a small boy who liked to build things. He had a box of blocks and a little toy truck.
He built a tall tower and put the truck on top. Then the tower fell down and the truck went boom.
Tom laughed and built the tower again, even taller this time. His sister clapped her hands.
TXT
for f in "$M/stories260K.bin" "$OUT/stories260K.f32.gguf" "$OUT/stories260K.f16.gguf"; do
    printf '%-40s ' "$(basename "$f")"
    $L perplexity -m "$f" -f "$OUT/eval.txt" --ctx 64 2>/dev/null
done

step "9. fine-tune: LoRA on stories260K with the bundled WikiSQL sample (examples/lora-stories.yaml)"
# validation loss before and after, checkpoints, PEFT + GGUF adapters, metrics.jsonl
rm -rf runs/lora-stories
$L finetune examples/lora-stories.yaml
first 3 tail -n 2 runs/lora-stories/metrics.jsonl

step "10. generate with the adapter: the model now writes SQL for a held-out question"
Q=$(printf 'table: 1-10015132-11\ncolumns: Player, No., Nationality, Position, Years in Toronto, School/Club Team\nQ: What position does the player who played for butler cc (ks) play?\nA: ')
echo "-- base model:"
$L generate -m "$M/stories260K.bin" --temp 0 -n 40 -p "$Q" 2>/dev/null
echo
echo "-- with runs/lora-stories/adapter:"
$L generate -m "$M/stories260K.bin" --lora runs/lora-stories/adapter --temp 0 -n 40 -p "$Q" 2>/dev/null
echo

step "done: outputs in $OUT and runs/lora-stories"
ls -la "$OUT"
