#!/usr/bin/python3
"""Verify a GGUF converted from a llama2.c checkpoint against the checkpoint itself.

The checkpoint and tokenizer are read independently with numpy; the GGUF must be what
llama.cpp needs to load the model as architecture "llama" (conventions of llama.cpp's
examples/convert-llama2c-to-ggml and its model loader):

required metadata (type, value):
  general.architecture                    string  "llama"
  llama.context_length                    uint32  seq_len
  llama.embedding_length                  uint32  dim
  llama.block_count                       uint32  n_layers
  llama.feed_forward_length               uint32  hidden_dim
  llama.rope.dimension_count              uint32  dim / n_heads
  llama.attention.head_count              uint32  n_heads
  llama.attention.head_count_kv           uint32  n_kv_heads
  llama.attention.layer_norm_rms_epsilon  float32 1e-5
  tokenizer.ggml.model                    string  "llama"
  tokenizer.ggml.tokens                   array[string]  pieces, ' ' -> U+2581, 0/1/2 = <unk>/<s>/</s>
  tokenizer.ggml.scores                   array[float32] the tokenizer's scores, bit for bit
  tokenizer.ggml.token_type               array[int32]   2 unk, 3 bos/eos (and empty pieces), 6 <0xNN>, 1 other
  tokenizer.ggml.bos_token_id / eos_token_id / unknown_token_id   uint32  1 / 2 / 0
optional metadata, checked when present:
  general.file_type uint32 (0 f32, 1 f16, 32 bf16), general.name string,
  general.quantization_version uint32, llama.vocab_size uint32 = vocab,
  llama.rope.freq_base float32 = 10000, tokenizer.ggml.pre string = "default",
  tokenizer.ggml.seperator_token_id / padding_token_id uint32 (llama.cpp writes 0xFFFFFFFF),
  tokenizer.ggml.add_bos_token / add_eos_token bool.
tensors (ne = reverse of the row-major shape; no permutation, llama2.c already uses the
interleaved RoPE order of llama.cpp's "llama" arch):
  token_embd.weight [dim, vocab]        output_norm.weight [dim]
  blk.N.attn_norm.weight [dim]          blk.N.ffn_norm.weight [dim]
  blk.N.attn_q.weight [dim, dim]        blk.N.attn_k.weight [dim, kv_dim]
  blk.N.attn_v.weight [dim, kv_dim]     blk.N.attn_output.weight [dim, dim]
  blk.N.ffn_gate.weight [dim, hidden] (w1)   blk.N.ffn_down.weight [hidden, dim] (w2)
  blk.N.ffn_up.weight [dim, hidden] (w3)
  output.weight [dim, vocab]: required when the checkpoint has its own classifier; when it
  is shared it may be absent (llama.cpp then reuses token_embd) or, as llama.cpp's own
  converter does, present as an exact copy of token_embd.
types: --type f32 all F32; f16/bf16: 2-D weights F16/BF16 (round to nearest even, bit
exact), 1-D norm weights F32.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import llama2c  # noqa: E402
from modelfile import (VT_ARRAY, VT_BOOL, VT_FLOAT32, VT_INT32, VT_STRING, VT_UINT32,  # noqa: E402
                       OUTTYPE_TO_FTYPE, OUTTYPE_TO_GGML, Report, check_kv, check_tensor, compare_values,
                       open_gguf_or_die)

REQUIRED_KEYS = {
    "general.architecture", "llama.context_length", "llama.embedding_length", "llama.block_count",
    "llama.feed_forward_length", "llama.rope.dimension_count", "llama.attention.head_count",
    "llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model",
    "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
}
OPTIONAL_KEYS = {
    "general.file_type", "general.name", "general.alignment", "general.quantization_version",
    "llama.vocab_size", "llama.rope.freq_base", "tokenizer.ggml.pre", "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
}


def check(gguf_path: str, ckpt: str, tok: str, outtype: str) -> int:
    rep = Report()
    cfg, w = llama2c.read_checkpoint(ckpt)
    pieces, scores = llama2c.read_tokenizer(tok, cfg.vocab_size)
    g = open_gguf_or_die(gguf_path, rep)
    if g is None:
        return rep.finish()

    # ---- hyper-parameters -------------------------------------------------------------
    check_kv(g, rep, "general.architecture", VT_STRING, "llama")
    check_kv(g, rep, "llama.context_length", VT_UINT32, cfg.seq_len)
    check_kv(g, rep, "llama.embedding_length", VT_UINT32, cfg.dim)
    check_kv(g, rep, "llama.block_count", VT_UINT32, cfg.n_layers)
    check_kv(g, rep, "llama.feed_forward_length", VT_UINT32, cfg.hidden_dim)
    check_kv(g, rep, "llama.rope.dimension_count", VT_UINT32, cfg.head_size)
    check_kv(g, rep, "llama.attention.head_count", VT_UINT32, cfg.n_heads)
    check_kv(g, rep, "llama.attention.head_count_kv", VT_UINT32, cfg.n_kv_heads)
    check_kv(g, rep, "llama.attention.layer_norm_rms_epsilon", VT_FLOAT32, 1e-5)
    check_kv(g, rep, "general.file_type", VT_UINT32, OUTTYPE_TO_FTYPE[outtype], required=False)
    check_kv(g, rep, "general.name", VT_STRING, required=False)
    check_kv(g, rep, "general.quantization_version", VT_UINT32, required=False)
    check_kv(g, rep, "llama.vocab_size", VT_UINT32, cfg.vocab_size, required=False)
    check_kv(g, rep, "llama.rope.freq_base", VT_FLOAT32, 10000.0, required=False)

    # ---- vocabulary -----------------------------------------------------------------
    check_kv(g, rep, "tokenizer.ggml.model", VT_STRING, "llama")
    check_kv(g, rep, "tokenizer.ggml.pre", VT_STRING, "default", required=False)
    texts, types = llama2c.llama_vocab(pieces)
    kv = g.kv("tokenizer.ggml.tokens")
    if check_kv(g, rep, "tokenizer.ggml.tokens", VT_ARRAY, elem_type=VT_STRING) is not None:
        got = kv.value.items
        if len(got) != len(texts):
            rep.err(f"tokenizer.ggml.tokens has {len(got)} entries, expected {len(texts)}")
        bad = [i for i, (a, b) in enumerate(zip(got, texts)) if a != b]
        if bad:
            rep.err(f"tokenizer.ggml.tokens: {len(bad)} pieces differ, e.g. " +
                    ", ".join(f"[{i}] {got[i]!r} != {texts[i]!r}" for i in bad[:5]))
    if check_kv(g, rep, "tokenizer.ggml.scores", VT_ARRAY, elem_type=VT_FLOAT32) is not None:
        compare_values(rep, "tokenizer.ggml.scores", g.kv("tokenizer.ggml.scores").value.np.astype(np.float32), scores)
    if check_kv(g, rep, "tokenizer.ggml.token_type", VT_ARRAY, elem_type=VT_INT32) is not None:
        compare_values(rep, "tokenizer.ggml.token_type", g.kv("tokenizer.ggml.token_type").value.np.astype(np.int32),
                       np.array(types, dtype=np.int32))
    check_kv(g, rep, "tokenizer.ggml.bos_token_id", VT_UINT32, 1)
    check_kv(g, rep, "tokenizer.ggml.eos_token_id", VT_UINT32, 2)
    check_kv(g, rep, "tokenizer.ggml.unknown_token_id", VT_UINT32, 0)
    for key in ("tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id"):
        v = check_kv(g, rep, key, VT_UINT32, required=False)
        if v is not None and v != 0xFFFFFFFF and v >= cfg.vocab_size:
            rep.err(f"{key} = {v} is neither a token id nor 0xFFFFFFFF (LLAMA_TOKEN_NULL)")
    for key in ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"):
        check_kv(g, rep, key, VT_BOOL, required=False)
    for kv in g.kvs:
        if kv.key not in REQUIRED_KEYS | OPTIONAL_KEYS:
            rep.note(f"extra metadata key {kv.key} (not checked)")

    # ---- tensors --------------------------------------------------------------------
    wt = OUTTYPE_TO_GGML[outtype]
    expected = llama2c.expected_tensors(cfg, w)
    for name, arr in expected.items():
        check_tensor(g, rep, name, arr, "F32" if arr.ndim == 1 else wt)
    if cfg.shared_classifier and g.tensor_info("output.weight") is not None:
        # llama.cpp's converter writes the shared classifier out as a copy; accept that
        rep.note("output.weight present although the classifier is shared: must equal token_embd")
        check_tensor(g, rep, "output.weight", w["token_embedding"], wt)
    allowed = set(expected) | {"output.weight"}
    for t in g.tensors:
        if t.name not in allowed:
            rep.err(f"unexpected tensor {t.name}")
    g.close()
    return rep.finish(f"OK: {gguf_path} matches {os.path.basename(ckpt)} ({outtype})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="GGUF written by the converter under test")
    ap.add_argument("--ckpt", required=True, help="llama2.c checkpoint (e.g. stories260K.bin)")
    ap.add_argument("--tok", required=True, help="llama2.c tokenizer (e.g. tok512.bin)")
    ap.add_argument("--type", default="f32", choices=["f32", "f16", "bf16"], help="output type the converter was asked for")
    a = ap.parse_args(argv)
    return check(a.gguf, a.ckpt, a.tok, a.type)


if __name__ == "__main__":
    sys.exit(main())
