# libcurl, OpenBLAS and libmpi are opened only by the paths that need them (src/base/dynlib.c):
# inference never maps them, and a missing one is an error that names it and what needs it.
. "$(dirname "$0")/lib.sh"

ROOT=$(pwd)
M=$ROOT/models/stories260K/stories260K.bin
D=$ROOT/data/wikisql-sample
W=$TMP/lazy
mkdir -p "$W"
HEAVY='libcurl|libmpi|libopen-pal|libopenblas|libgfortran|libgnutls|libcrypto'

if command -v readelf >/dev/null 2>&1; then
    check "the llmops binary does not link libcurl, libmpi or OpenBLAS" \
        bash -c "! readelf -d '$LLMOPS' | grep NEEDED | grep -E 'libcurl|libmpi|libopenblas'"
else
    skip "the llmops binary does not link libcurl, libmpi or OpenBLAS" "no readelf"
fi
# the dynamic loader reports every library a process opens, dlopen included
check "generate and bench load none of them" \
    bash -c "LD_DEBUG=files $LLMOPS generate -m $M --temp 0 -n 8 -p 'Once' >/dev/null 2>'$W/gen.log' &&
             LD_DEBUG=files $LLMOPS bench -m $M -p 16 -n 4 --reps 1 --threads 1 >/dev/null 2>'$W/bench.log' &&
             grep -q 'file=libc.so' '$W/gen.log' && ! grep -E 'file=[^ ]*($HEAVY)' '$W/gen.log' '$W/bench.log'"

cfg() { # cfg NAME TRAIN_SOURCE (a run without validation data fails with "out of memory" on main too)
    cat >"$W/$1.yaml" <<YAML
model:
  path: $M
method: lora
lora:
  rank: 2
  alpha: 4
  targets: [q]
data:
  train: [$2]
  validation: [$D/valid.jsonl]
  seq_len: 32
training:
  max_steps: 1
  batch_size: 1
  threads: 1
eval:
  every: 0
  max_rows: 4
output:
  dir: $W/$1
YAML
}
cfg blas "$D/train.jsonl"
check "fine-tuning opens OpenBLAS (and not libcurl or libmpi for local data in one process)" \
    bash -c "LD_DEBUG=files $LLMOPS finetune '$W/blas.yaml' --quiet >/dev/null 2>'$W/ft.log' &&
             grep -q 'file=libopenblas' '$W/ft.log' && ! grep -E 'file=[^ ]*(libcurl|libmpi)' '$W/ft.log'"
cfg noblas "$D/train.jsonl"
check_fails "without OpenBLAS the trainer names it and what needs it" \
    "OpenBLAS is needed for the trainer's matrix products" \
    env LLMOPS_BLAS_LIB=/nonexistent/libopenblas.so.0 $LLMOPS finetune "$W/noblas.yaml" --quiet
cfg nocurl "http://127.0.0.1:9/train.jsonl"
check_fails "without libcurl an http:// source names it and what needs it" \
    "libcurl is needed for http://, https:// and s3:// sources" \
    env LLMOPS_CURL_LIB=/nonexistent/libcurl.so.4 $LLMOPS finetune "$W/nocurl.yaml" --quiet
cfg nompi "$D/train.jsonl"
check_fails "without libmpi a run started by mpirun names it and what needs it" \
    "libmpi is needed for training across the ranks" \
    env OMPI_COMM_WORLD_SIZE=2 LLMOPS_MPI_LIB=/nonexistent/libmpi.so.40 $LLMOPS finetune "$W/nompi.yaml" --quiet
