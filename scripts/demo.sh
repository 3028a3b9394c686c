#!/usr/bin/env bash
# The README's main job on the embedded default: no server, no account, nothing
# outside this repository. Today's pipeline, on the bundled stories260K model:
#   llama2.c checkpoint -> inspect -> GGUF (f32, f16) -> inspect -> independent check
#   -> Hugging Face folder (safetensors + config.json) -> independent check
# Later issues grow it into fine-tune -> evaluate -> register -> serve.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

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
$L inspect --max-items 6 "$OUT/stories260K.f16.gguf" | head -40
echo "  ..."

step "4. check the GGUF with an independent reader (tests/oracle, Python + numpy)"
/usr/bin/python3 tests/oracle/check_llama2c_gguf.py --gguf "$OUT/stories260K.f16.gguf" \
    --ckpt "$M/stories260K.bin" --tok "$M/tok512.bin" --type f16

step "5. export the GGUF as a Hugging Face folder and check it"
rm -rf "$OUT/stories260K-hf"
$L convert "$OUT/stories260K.f32.gguf" "$OUT/stories260K-hf"
$L inspect "$OUT/stories260K-hf" | head -8
/usr/bin/python3 tests/oracle/check_hf_export.py --gguf "$OUT/stories260K.f32.gguf" --out "$OUT/stories260K-hf"

step "done: outputs in $OUT"
ls -la "$OUT"
