#!/usr/bin/python3
"""Verify a GGUF converted from a Hugging Face GPT-2 folder the way llama.cpp's
convert_hf_to_gguf.py converts GPT2LMHeadModel (class GPT2Model).

required metadata (type, value from the folder):
  general.architecture               string  "gpt2"
  gpt2.block_count                   uint32  n_layer
  gpt2.context_length                uint32  n_ctx (n_positions if n_ctx is absent)
  gpt2.embedding_length              uint32  n_embd
  gpt2.feed_forward_length           uint32  4*n_embd (what the converter writes; n_inner if set)
  gpt2.attention.head_count          uint32  n_head
  gpt2.attention.layer_norm_epsilon  float32 layer_norm_epsilon
  general.file_type                  uint32  0 f32 / 1 f16 / 32 bf16
  tokenizer.ggml.model               string  "gpt2"
  tokenizer.ggml.pre                 string  "gpt-2" (--pre to change)
  tokenizer.ggml.tokens              array[string]  vocab in id order ("[PAD<i>]" for holes)
  tokenizer.ggml.token_type          array[int32]   3 special added tokens, 4 other added,
                                                    5 holes, 1 the rest
  tokenizer.ggml.merges              array[string]  tokenizer.json model.merges (or merges.txt)
  tokenizer.ggml.bos_token_id / eos_token_id        uint32 (tokenizer_config.json's tokens,
                                                    else config.json's *_token_id)
checked when present (llama.cpp's converter writes them when the folder defines them):
  tokenizer.ggml.unknown_token_id, padding_token_id, seperator_token_id, cls_token_id,
  mask_token_id (uint32), tokenizer.ggml.add_*_token (bool), tokenizer.chat_template,
  general.name (string), general.quantization_version (uint32).
tensors (GGUF ne = reverse of the row-major shape shown in brackets):
  token_embd.weight      <- transformer.wte.weight            [vocab, n_embd]
  position_embd.weight   <- transformer.wpe.weight            [n_ctx, n_embd]   always F32
  output_norm.weight/bias <- transformer.ln_f                 F32
  blk.N.attn_norm.weight/bias <- h.N.ln_1                     F32
  blk.N.attn_qkv.weight  <- h.N.attn.c_attn.weight TRANSPOSED [3*n_embd, n_embd]
  blk.N.attn_qkv.bias    <- h.N.attn.c_attn.bias              F32
  blk.N.attn_output.weight <- h.N.attn.c_proj.weight TRANSPOSED [n_embd, n_embd]
  blk.N.attn_output.bias
  blk.N.ffn_norm.weight/bias  <- h.N.ln_2                     F32
  blk.N.ffn_up.weight    <- h.N.mlp.c_fc.weight TRANSPOSED    [n_ff, n_embd]
  blk.N.ffn_up.bias
  blk.N.ffn_down.weight  <- h.N.mlp.c_proj.weight TRANSPOSED  [n_embd, n_ff]
  blk.N.ffn_down.bias
  output.weight          <- lm_head.weight, only if the folder has one; otherwise absent
                            (llama.cpp's gpt2 loader then reuses token_embd) or an exact
                            copy of token_embd.
  (h.N.attn.bias / attn.masked_bias buffers are dropped.)
types: f32 all F32; f16/bf16: the 2-D .weight tensors except position_embd are F16/BF16.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import hfgpt2  # noqa: E402
from modelfile import (VT_ARRAY, VT_STRING, VT_UINT32, OUTTYPE_TO_GGML, Report, check_kv,  # noqa: E402
                       check_tensor, compare_values, open_gguf_or_die, to_python)


def check(gguf_path: str, hf: str, outtype: str, pre: str) -> int:
    rep = Report()
    wt = OUTTYPE_TO_GGML[outtype]
    exp = hfgpt2.expect(hf, wt, pre)
    for n in exp.notes:
        rep.note(n)
    g = open_gguf_or_die(gguf_path, rep)
    if g is None:
        return rep.finish()

    known = set()
    for key, vtype, value, required, etype in exp.metadata:
        known.add(key)
        if vtype != VT_ARRAY:
            got = check_kv(g, rep, key, vtype, value, required=required)
            if got is None and not required and g.kv(key) is None:
                rep.note(f"{key} not written (llama.cpp's converter would write {value!r})")
            continue
        if check_kv(g, rep, key, VT_ARRAY, required=required, elem_type=etype) is None:
            continue
        arr = g.kv(key).value
        if etype == VT_STRING:
            got = [to_python(v) for v in arr.items]
            if len(got) != len(value):
                rep.err(f"{key}: {len(got)} entries, expected {len(value)}")
            bad = [i for i, (a, b) in enumerate(zip(got, value)) if a != b]
            if bad:
                rep.err(f"{key}: {len(bad)} entries differ, e.g. " +
                        ", ".join(f"[{i}] {got[i]!r} != {value[i]!r}" for i in bad[:5]))
        else:
            compare_values(rep, key, arr.np.astype(np.int32), np.array(value, dtype=np.int32))
    known |= {"general.name", "general.quantization_version", "general.alignment"}
    check_kv(g, rep, "general.name", VT_STRING, required=False)
    check_kv(g, rep, "general.quantization_version", VT_UINT32, required=False)
    for kv in g.kvs:
        if kv.key not in known:
            rep.note(f"extra metadata key {kv.key} (not checked)")

    for name, arr in exp.tensors.items():
        check_tensor(g, rep, name, arr, "F32" if name in exp.always_f32 else wt)
    if "output.weight" not in exp.tensors and g.tensor_info("output.weight") is not None:
        rep.note("output.weight present although the folder has no lm_head: must equal token_embd")
        check_tensor(g, rep, "output.weight", exp.tensors["token_embd.weight"], wt)
    allowed = set(exp.tensors) | {"output.weight"}
    for t in g.tensors:
        if t.name not in allowed:
            rep.err(f"unexpected tensor {t.name}")
    g.close()
    return rep.finish(f"OK: {gguf_path} matches {hf} ({outtype})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="GGUF written by the converter under test")
    ap.add_argument("--hf", required=True, help="Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer files)")
    ap.add_argument("--type", default="f32", choices=["f32", "f16", "bf16"], help="output type the converter was asked for")
    ap.add_argument("--pre", default="gpt-2", help="expected tokenizer.ggml.pre (default gpt-2)")
    a = ap.parse_args(argv)
    return check(a.gguf, a.hf, a.type, a.pre)


if __name__ == "__main__":
    sys.exit(main())
