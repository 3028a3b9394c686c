#!/usr/bin/python3
"""Verify a GGUF -> Hugging Face export: DIR/config.json plus DIR/model.safetensors (or
shards listed in DIR/model.safetensors.index.json) must describe the same model as IN.gguf.

llama arch -> LlamaForCausalLM
  config.json: model_type "llama"; hidden_size = llama.embedding_length; intermediate_size
  = llama.feed_forward_length; num_hidden_layers = llama.block_count; num_attention_heads =
  llama.attention.head_count; num_key_value_heads = llama.attention.head_count_kv (head_count
  if absent); rms_norm_eps = llama.attention.layer_norm_rms_epsilon (as float32);
  rope_theta = llama.rope.freq_base (10000 if absent); max_position_embeddings =
  llama.context_length; vocab_size = token_embd ne[1]; tie_word_embeddings (bool, true iff
  no separate classifier is exported); checked if present: architectures contains
  "LlamaForCausalLM", head_dim = hidden_size / heads, hidden_act "silu".
  tensors: token_embd -> model.embed_tokens.weight; output_norm -> model.norm.weight;
  output -> lm_head.weight; blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
  ffn_gate, ffn_up, ffn_down} -> model.layers.N.{input_layernorm, self_attn.q_proj,
  self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, post_attention_layernorm,
  mlp.gate_proj, mlp.up_proj, mlp.down_proj}.weight.  q_proj / k_proj get the inverse of
  convert_hf_to_gguf's LlamaModel.permute (n_head for q, n_head_kv for k): GGUF rows are in
  RoPE's interleaved pair order, HF's in rotate-half order.

gpt2 arch -> GPT2LMHeadModel
  config.json: model_type "gpt2"; n_embd, n_layer, n_head; n_positions = gpt2.context_length;
  vocab_size; layer_norm_epsilon (as float32); checked if present: n_ctx = context_length,
  architectures contains "GPT2LMHeadModel", n_inner = feed_forward_length (if n_inner is
  null/absent, feed_forward_length must be 4*n_embd).
  tensors ("transformer." prefix, or none consistently): token_embd -> wte.weight,
  position_embd -> wpe.weight, output_norm -> ln_f, blk.N.attn_norm -> h.N.ln_1,
  attn_qkv -> h.N.attn.c_attn, attn_output -> h.N.attn.c_proj, ffn_norm -> h.N.ln_2,
  ffn_up -> h.N.mlp.c_fc, ffn_down -> h.N.mlp.c_proj (weights and biases); output ->
  lm_head.weight.  Conv1D weights (c_attn, c_proj, c_fc) are transposed back to [in, out].

Values must be exact and in the GGUF tensor's dtype (F32/F16/BF16).  Q8_0 and Q4_0 GGUF
tensors are dequantized (exact in float32) and accepted as F32/F16/BF16 exports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

from modelfile import (FormatError, Report, SafetensorsFolder, compare_values, dequantize, encode_as,  # noqa: E402
                       open_gguf_or_die)

FLOAT_TYPES = ("F32", "F16", "BF16")
LLAMA_LAYER = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj"}
GPT2_LAYER = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
              "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
GPT2_CONV1D = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf's LlamaModel.permute: rows of each head go from
    (pairs interleaved) back to (first halves, then second halves)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def cfg_eq(rep: Report, cfg: dict, key: str, want, required: bool = True, f32: bool = False) -> None:
    if key not in cfg:
        if required:
            rep.err(f"config.json lacks {key} (expected {want!r})")
        return
    got = cfg[key]
    if f32:
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) and np.float32(got) == np.float32(want)
    elif isinstance(want, bool):
        ok = got is want
    elif isinstance(want, int):
        ok = isinstance(got, int) and not isinstance(got, bool) and got == want
    else:
        ok = got == want
    if not ok:
        rep.err(f"config.json {key} = {got!r}, expected {want!r}")


def gguf_value(g, t):
    """(array in the GGUF's stored dtype, dtype name) or (float32 array, None) when dequantized."""
    if t.type_name in FLOAT_TYPES:
        return g.tensor_array(t, bf16_as_f32=False), t.type_name
    return dequantize(t.type_name, g.tensor_bytes(t), t.np_shape), None


def compare_export(rep: Report, st: SafetensorsFolder, hf_name: str, want: np.ndarray, want_dtype: str | None) -> None:
    info = st.info(hf_name)
    if info is None:
        rep.err(f"missing safetensors tensor {hf_name}")
        return
    if want_dtype is None:   # dequantized source: any float dtype, values exact in that dtype
        if info.dtype not in FLOAT_TYPES:
            rep.err(f"{hf_name}: dtype {info.dtype}, expected a float dtype")
            return
        want, want_dtype = encode_as(want, info.dtype), info.dtype
    if info.dtype != want_dtype:
        rep.err(f"{hf_name}: dtype {info.dtype}, expected {want_dtype} (the GGUF tensor's type)")
        return
    if list(info.shape) != list(want.shape):
        rep.err(f"{hf_name}: shape {info.shape}, expected {list(want.shape)}")
        return
    compare_values(rep, hf_name, st.tensor_array(hf_name, bf16_as_f32=False), want)


def check_llama(g, cfg: dict, st: SafetensorsFolder, rep: Report) -> set[str]:
    n_embd = g.get("llama.embedding_length")
    n_head = g.get("llama.attention.head_count")
    n_head_kv = g.get("llama.attention.head_count_kv", n_head)
    n_layer = g.get("llama.block_count")
    if None in (n_embd, n_head, n_layer):
        rep.err("GGUF lacks llama.embedding_length / attention.head_count / block_count")
        return set()
    tok = g.tensor_info("token_embd.weight")
    vocab = tok.ne[1] if tok is not None and len(tok.ne) == 2 else len(g.get("tokenizer.ggml.tokens", []))
    rope_dim = g.get("llama.rope.dimension_count", n_embd // n_head)
    if rope_dim != n_embd // n_head:
        rep.err(f"llama.rope.dimension_count {rope_dim} != head size {n_embd // n_head}: not expressible in LlamaConfig")

    cfg_eq(rep, cfg, "model_type", "llama")
    if "architectures" in cfg and "LlamaForCausalLM" not in (cfg["architectures"] or []):
        rep.err(f"config.json architectures = {cfg['architectures']!r}, expected LlamaForCausalLM")
    cfg_eq(rep, cfg, "hidden_size", n_embd)
    cfg_eq(rep, cfg, "intermediate_size", g.get("llama.feed_forward_length"))
    cfg_eq(rep, cfg, "num_hidden_layers", n_layer)
    cfg_eq(rep, cfg, "num_attention_heads", n_head)
    cfg_eq(rep, cfg, "num_key_value_heads", n_head_kv)
    cfg_eq(rep, cfg, "rms_norm_eps", g.get("llama.attention.layer_norm_rms_epsilon"), f32=True)
    cfg_eq(rep, cfg, "rope_theta", g.get("llama.rope.freq_base", 10000.0), f32=True)
    cfg_eq(rep, cfg, "max_position_embeddings", g.get("llama.context_length"))
    cfg_eq(rep, cfg, "vocab_size", vocab)
    cfg_eq(rep, cfg, "head_dim", n_embd // n_head, required=False)
    cfg_eq(rep, cfg, "hidden_act", "silu", required=False)
    if cfg.get("rope_scaling") not in (None, {}):
        rep.err(f"config.json rope_scaling = {cfg['rope_scaling']!r}; the GGUF has plain RoPE")
    for kind, key in (("bos", "tokenizer.ggml.bos_token_id"), ("eos", "tokenizer.ggml.eos_token_id")):
        if g.has(key) and f"{kind}_token_id" in cfg:
            cfg_eq(rep, cfg, f"{kind}_token_id", g.get(key))

    used = set()
    for t in g.tensors:
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            hf = "model.norm.weight"
        elif t.name == "output.weight":
            continue   # handled with tying below
        elif len(parts) == 4 and parts[0] == "blk" and parts[2] in LLAMA_LAYER and parts[3] == "weight":
            hf = f"model.layers.{int(parts[1])}.{LLAMA_LAYER[parts[2]]}.weight"
        else:
            rep.err(f"GGUF tensor {t.name} has no LlamaForCausalLM counterpart")
            continue
        val, dt = gguf_value(g, t)
        if parts[-2] == "attn_q":
            val = unpermute(val, n_head)
        elif parts[-2] == "attn_k":
            val = unpermute(val, n_head_kv)
        compare_export(rep, st, hf, val, dt)
        used.add(hf)
    used |= check_tied(g, cfg, st, rep, "model.embed_tokens.weight", default_tie=None)
    return used


def check_tied(g, cfg: dict, st: SafetensorsFolder, rep: Report, embed_hf: str, default_tie) -> set[str]:
    """output.weight vs lm_head.weight and tie_word_embeddings.

    Tying is only faithful if the GGUF has no separate classifier or one that equals
    token_embd bit for bit; otherwise lm_head.weight must be exported and not tied."""
    out, emb = g.tensor_info("output.weight"), g.tensor_info("token_embd.weight")
    tie = cfg.get("tie_word_embeddings", default_tie)
    if tie is None:
        rep.err("config.json lacks tie_word_embeddings")
        return set()
    if not isinstance(tie, bool):
        rep.err(f"config.json tie_word_embeddings = {tie!r} is not a bool")
        return set()
    same = out is None or (emb is not None and out.type == emb.type and out.ne == emb.ne
                           and g.tensor_bytes(out) == g.tensor_bytes(emb))
    if tie and not same:
        rep.err("tie_word_embeddings is true but the GGUF's output.weight differs from token_embd.weight")
        return set()
    if not tie and out is None:
        rep.err("tie_word_embeddings is false but the GGUF has no output.weight (llama.cpp reuses token_embd)")
    src = out if out is not None else emb
    if src is None:
        return set()
    if st.info("lm_head.weight") is None:
        if not tie:
            rep.err("tie_word_embeddings is false but lm_head.weight is missing")
        return set()
    val, dt = gguf_value(g, src)
    compare_export(rep, st, "lm_head.weight", val, dt)
    return {"lm_head.weight"}


def check_gpt2(g, cfg: dict, st: SafetensorsFolder, rep: Report) -> set[str]:
    n_embd = g.get("gpt2.embedding_length")
    n_ff = g.get("gpt2.feed_forward_length")
    ctx = g.get("gpt2.context_length")
    tok = g.tensor_info("token_embd.weight")
    vocab = tok.ne[1] if tok is not None and len(tok.ne) == 2 else len(g.get("tokenizer.ggml.tokens", []))
    cfg_eq(rep, cfg, "model_type", "gpt2")
    if "architectures" in cfg and "GPT2LMHeadModel" not in (cfg["architectures"] or []):
        rep.err(f"config.json architectures = {cfg['architectures']!r}, expected GPT2LMHeadModel")
    cfg_eq(rep, cfg, "n_embd", n_embd)
    cfg_eq(rep, cfg, "n_layer", g.get("gpt2.block_count"))
    cfg_eq(rep, cfg, "n_head", g.get("gpt2.attention.head_count"))
    cfg_eq(rep, cfg, "n_positions", ctx)
    cfg_eq(rep, cfg, "n_ctx", ctx, required=False)
    cfg_eq(rep, cfg, "vocab_size", vocab)
    cfg_eq(rep, cfg, "layer_norm_epsilon", g.get("gpt2.attention.layer_norm_epsilon"), f32=True)
    if cfg.get("n_inner") is not None:
        cfg_eq(rep, cfg, "n_inner", n_ff)
    elif n_ff is not None and n_embd is not None and n_ff != 4 * n_embd:
        rep.err(f"n_inner is unset (HF uses 4*n_embd = {4 * n_embd}) but gpt2.feed_forward_length = {n_ff}")
    act = cfg.get("activation_function")
    if act is not None and act not in ("gelu_new", "gelu_pytorch_tanh"):
        rep.note(f"activation_function {act!r}: llama.cpp's gpt2 graph uses the tanh GELU (gelu_new)")

    prefix = "transformer." if st.info("transformer.wte.weight") is not None or st.info("wte.weight") is None else ""
    used = set()
    for t in g.tensors:
        parts = t.name.split(".")
        if t.name == "output.weight":
            continue
        if t.name in ("token_embd.weight", "position_embd.weight"):
            hf = prefix + ("wte.weight" if t.name.startswith("token") else "wpe.weight")
        elif parts[0] == "output_norm" and len(parts) == 2:
            hf = f"{prefix}ln_f.{parts[1]}"
        elif len(parts) == 4 and parts[0] == "blk" and parts[2] in GPT2_LAYER and parts[3] in ("weight", "bias"):
            hf = f"{prefix}h.{int(parts[1])}.{GPT2_LAYER[parts[2]]}.{parts[3]}"
        else:
            rep.err(f"GGUF tensor {t.name} has no GPT2LMHeadModel counterpart")
            continue
        val, dt = gguf_value(g, t)
        if len(parts) == 4 and parts[2] in GPT2_CONV1D and parts[3] == "weight":
            val = np.ascontiguousarray(val.T)   # back to Conv1D's [in, out]
        compare_export(rep, st, hf, val, dt)
        used.add(hf)
    used |= check_tied(g, cfg, st, rep, prefix + "wte.weight", default_tie=True)  # GPT2Config ties by default
    return used


def check(gguf_path: str, out_dir: str) -> int:
    rep = Report()
    g = open_gguf_or_die(gguf_path, rep)
    if g is None:
        return rep.finish()
    try:
        with open(os.path.join(out_dir, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        st = SafetensorsFolder(out_dir)
    except (OSError, ValueError, FormatError) as e:
        rep.err(str(e))
        return rep.finish()
    for p in st.problems:
        rep.err(p)
    arch = g.get("general.architecture")
    if arch == "llama":
        used = check_llama(g, cfg, st, rep)
    elif arch == "gpt2":
        used = check_gpt2(g, cfg, st, rep)
    else:
        rep.err(f"general.architecture {arch!r}: only llama and gpt2 are checked")
        return rep.finish()
    for name in st.names():
        if name not in used:
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                rep.note(f"extra buffer {name} (ignored by transformers' loader)")
            else:
                rep.err(f"unexpected safetensors tensor {name}")
    g.close()
    st.close()
    return rep.finish(f"OK: {out_dir} is a faithful {arch} export of {gguf_path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="the GGUF that was exported")
    ap.add_argument("--out", required=True, help="the exported Hugging Face folder")
    a = ap.parse_args(argv)
    return check(a.gguf, a.out)


if __name__ == "__main__":
    sys.exit(main())
