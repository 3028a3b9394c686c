#!/usr/bin/python3
"""Reference writers for the oracle's self-tests: a minimal GGUF writer and Python versions
of the three conversions (llama2.c -> GGUF, HF GPT-2 -> GGUF, GGUF -> HF folder).

They exist so that selftest.py can show each checker accepts a correct file and rejects
broken ones.  They can also produce golden files for the C side's tests:

    refbuild.py llama2c --ckpt stories260K.bin --tok tok512.bin --type f16 -o ref.gguf
    refbuild.py gpt2 --hf tiny-random-gpt2 --type bf16 -o ref.gguf
    refbuild.py hf-export --gguf ref.gguf -o outdir
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402

import hfgpt2  # noqa: E402
import llama2c  # noqa: E402
from modelfile import (GGML_TYPE_IDS, GGUFArray, GGUFFile, OUTTYPE_TO_FTYPE, OUTTYPE_TO_GGML, VT_ARRAY,  # noqa: E402
                       VT_BOOL, VT_FLOAT32, VT_INT32, VT_STRING, VT_UINT32, _SCALAR_FMT, encode_as, ggml_nbytes)


# --------------------------------------------------------------------------------------
# GGUF writer
# --------------------------------------------------------------------------------------

def _enc_str(s) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _enc_value(vtype: int, value, elem_type: int | None = None) -> bytes:
    if vtype == VT_STRING:
        return _enc_str(value)
    if vtype == VT_ARRAY:
        if isinstance(value, GGUFArray):
            elem_type, value = value.elem_type, value.items
        out = struct.pack("<IQ", elem_type, len(value))
        if elem_type in _SCALAR_FMT:
            return out + b"".join(struct.pack("<" + _SCALAR_FMT[elem_type], v) for v in value)
        if elem_type == VT_ARRAY:
            # nested arrays are given as (elem_type, items) pairs or GGUFArray
            return out + b"".join(_enc_value(VT_ARRAY, v.items if isinstance(v, GGUFArray) else v[1],
                                             v.elem_type if isinstance(v, GGUFArray) else v[0]) for v in value)
        return out + b"".join(_enc_value(elem_type, v) for v in value)
    return struct.pack("<" + _SCALAR_FMT[vtype], value)


def write_gguf(path: str, kvs: list, tensors: list, alignment: int = 32, version: int = 3) -> None:
    """kvs: (key, vtype, value[, elem_type]); tensors: (name, ggml type name, stored array or
    raw bytes, ne).  general.alignment is written when alignment != 32."""
    kvs = list(kvs)
    if alignment != 32 and not any(k[0] == "general.alignment" for k in kvs):
        kvs.append(("general.alignment", VT_UINT32, alignment))
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for kv in kvs:
        key, vtype, value = kv[:3]
        head += _enc_str(key) + struct.pack("<I", vtype) + _enc_value(vtype, value, kv[3] if len(kv) > 3 else None)
    blobs, off = [], 0
    for name, tname, data, ne in tensors:
        raw = data if isinstance(data, (bytes, bytearray)) else np.ascontiguousarray(data).tobytes()
        assert len(raw) == ggml_nbytes(GGML_TYPE_IDS[tname], ne), name
        head += _enc_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", GGML_TYPE_IDS[tname], off)
        pad = (-len(raw)) % alignment
        blobs.append(raw + b"\0" * pad)
        off += len(raw) + pad
    head += b"\0" * ((-len(head)) % alignment)
    with open(path, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)


def _tensor(name: str, arr: np.ndarray, tname: str):
    return (name, tname, encode_as(arr, tname), list(reversed(arr.shape)))


# --------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------

def llama2c_contents(ckpt: str, tok: str, outtype: str, output_copy: bool = False) -> tuple[list, list]:
    """(kvs, tensors) for write_gguf, as llama.cpp's converter would produce them (but with
    context_length = seq_len and the shared classifier not duplicated unless output_copy)."""
    cfg, w = llama2c.read_checkpoint(ckpt)
    pieces, scores = llama2c.read_tokenizer(tok, cfg.vocab_size)
    texts, types = llama2c.llama_vocab(pieces)
    kvs = [("general.architecture", VT_STRING, "llama"),
           ("general.name", VT_STRING, "llama"),
           ("general.file_type", VT_UINT32, OUTTYPE_TO_FTYPE[outtype]),
           ("llama.context_length", VT_UINT32, cfg.seq_len),
           ("llama.embedding_length", VT_UINT32, cfg.dim),
           ("llama.block_count", VT_UINT32, cfg.n_layers),
           ("llama.feed_forward_length", VT_UINT32, cfg.hidden_dim),
           ("llama.rope.dimension_count", VT_UINT32, cfg.head_size),
           ("llama.attention.head_count", VT_UINT32, cfg.n_heads),
           ("llama.attention.head_count_kv", VT_UINT32, cfg.n_kv_heads),
           ("llama.attention.layer_norm_rms_epsilon", VT_FLOAT32, 1e-5),
           ("tokenizer.ggml.model", VT_STRING, "llama"),
           ("tokenizer.ggml.tokens", VT_ARRAY, texts, VT_STRING),
           ("tokenizer.ggml.scores", VT_ARRAY, [float(s) for s in scores], VT_FLOAT32),
           ("tokenizer.ggml.token_type", VT_ARRAY, types, VT_INT32),
           ("tokenizer.ggml.bos_token_id", VT_UINT32, 1),
           ("tokenizer.ggml.eos_token_id", VT_UINT32, 2),
           ("tokenizer.ggml.unknown_token_id", VT_UINT32, 0)]
    wt = OUTTYPE_TO_GGML[outtype]
    exp = llama2c.expected_tensors(cfg, w)
    if output_copy and "output.weight" not in exp:
        exp["output.weight"] = w["token_embedding"]
    tensors = [_tensor(n, a, "F32" if a.ndim == 1 else wt) for n, a in exp.items()]
    return kvs, tensors


def build_llama2c(ckpt: str, tok: str, outtype: str, path: str, output_copy: bool = False) -> None:
    write_gguf(path, *llama2c_contents(ckpt, tok, outtype, output_copy))


def gpt2_contents(hf: str, outtype: str) -> tuple[list, list]:
    wt = OUTTYPE_TO_GGML[outtype]
    e = hfgpt2.expect(hf, wt)
    kvs = []
    for key, vtype, value, required, etype in e.metadata:
        kvs.append((key, vtype, value, etype) if vtype == VT_ARRAY else (key, vtype, value))
    tensors = [_tensor(n, a, "F32" if n in e.always_f32 else wt) for n, a in e.tensors.items()]
    return kvs, tensors


def build_gpt2(hf: str, outtype: str, path: str) -> None:
    write_gguf(path, *gpt2_contents(hf, outtype))


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # convert_hf_to_gguf LlamaModel.permute: HF rotate-half rows -> interleaved pairs
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_safetensors(path: str, tensors: dict, metadata: dict | None = None) -> None:
    """tensors: name -> (dtype string, stored numpy array)."""
    header, off, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header).encode()
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for b in blobs:
            f.write(b)


def export_hf(gguf_path: str, out_dir: str) -> None:
    import check_hf_export as che
    os.makedirs(out_dir, exist_ok=True)
    g = GGUFFile(gguf_path)
    arch = g.get("general.architecture")
    out: dict = {}
    has_out = g.tensor_info("output.weight") is not None
    for t in g.tensors:
        arr = g.tensor_array(t, bf16_as_f32=False)
        p = t.name.split(".")
        if arch == "llama":
            if t.name == "token_embd.weight":
                hf = "model.embed_tokens.weight"
            elif t.name == "output_norm.weight":
                hf = "model.norm.weight"
            elif t.name == "output.weight":
                hf = "lm_head.weight"
            else:
                hf = f"model.layers.{p[1]}.{che.LLAMA_LAYER[p[2]]}.weight"
            if p[-2] == "attn_q":
                arr = che.unpermute(arr, g.get("llama.attention.head_count"))
            elif p[-2] == "attn_k":
                arr = che.unpermute(arr, g.get("llama.attention.head_count_kv"))
        else:
            if t.name == "output.weight":
                hf = "lm_head.weight"
            elif p[0] == "blk":
                hf = f"transformer.h.{p[1]}.{che.GPT2_LAYER[p[2]]}.{p[3]}"
                if p[2] in che.GPT2_CONV1D and p[3] == "weight":
                    arr = np.ascontiguousarray(arr.T)
            else:
                hf = "transformer." + {"token_embd": "wte", "position_embd": "wpe", "output_norm": "ln_f"}[p[0]] + "." + p[1]
        out[hf] = (t.type_name, arr)
    if arch == "llama":
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
               "hidden_size": g.get("llama.embedding_length"),
               "intermediate_size": g.get("llama.feed_forward_length"),
               "num_hidden_layers": g.get("llama.block_count"),
               "num_attention_heads": g.get("llama.attention.head_count"),
               "num_key_value_heads": g.get("llama.attention.head_count_kv"),
               "rms_norm_eps": g.get("llama.attention.layer_norm_rms_epsilon"),
               "rope_theta": g.get("llama.rope.freq_base", 10000.0),
               "max_position_embeddings": g.get("llama.context_length"),
               "vocab_size": g.tensor_info("token_embd.weight").ne[1],
               "tie_word_embeddings": not has_out, "hidden_act": "silu"}
    else:
        cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
               "n_embd": g.get("gpt2.embedding_length"), "n_layer": g.get("gpt2.block_count"),
               "n_head": g.get("gpt2.attention.head_count"), "n_positions": g.get("gpt2.context_length"),
               "n_ctx": g.get("gpt2.context_length"), "vocab_size": g.tensor_info("token_embd.weight").ne[1],
               "layer_norm_epsilon": g.get("gpt2.attention.layer_norm_epsilon"),
               "tie_word_embeddings": not has_out, "activation_function": "gelu_new"}
    g.close()
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), out, {"format": "pt"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("llama2c", help="llama2.c checkpoint -> GGUF")
    a.add_argument("--ckpt", required=True)
    a.add_argument("--tok", required=True)
    a.add_argument("--type", default="f32", choices=["f32", "f16", "bf16"])
    a.add_argument("--output-copy", action="store_true", help="write output.weight even when shared (llama.cpp does)")
    a.add_argument("-o", required=True)
    b = sub.add_parser("gpt2", help="HF GPT-2 folder -> GGUF")
    b.add_argument("--hf", required=True)
    b.add_argument("--type", default="f32", choices=["f32", "f16", "bf16"])
    b.add_argument("-o", required=True)
    c = sub.add_parser("hf-export", help="GGUF (llama/gpt2) -> HF folder")
    c.add_argument("--gguf", required=True)
    c.add_argument("-o", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "llama2c":
        build_llama2c(args.ckpt, args.tok, args.type, args.o, args.output_copy)
    elif args.cmd == "gpt2":
        build_gpt2(args.hf, args.type, args.o)
    else:
        export_hf(args.gguf, args.o)
    return 0


if __name__ == "__main__":
    sys.exit(main())
