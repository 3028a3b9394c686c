"""What llama.cpp's convert_hf_to_gguf.py (GPT2Model + TextModel._set_vocab_gpt2 + gguf-py
SpecialVocab) writes for a Hugging Face GPT-2 folder, computed independently from the
folder's files.  Shared by check_gpt2_gguf.py and refbuild.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from modelfile import (TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_USER_DEFINED, VT_ARRAY, VT_BOOL, VT_FLOAT32,
                       VT_INT32, VT_STRING, VT_UINT32, SafetensorsFolder)

# SpecialVocab's token kinds, in its order, and the GGUF key each one is written to
SPECIAL_KINDS = [("bos", "tokenizer.ggml.bos_token_id"), ("eos", "tokenizer.ggml.eos_token_id"),
                 ("unk", "tokenizer.ggml.unknown_token_id"), ("sep", "tokenizer.ggml.seperator_token_id"),
                 ("pad", "tokenizer.ggml.padding_token_id"), ("cls", "tokenizer.ggml.cls_token_id"),
                 ("mask", "tokenizer.ggml.mask_token_id")]

# HF GPT-2 module name (without the "transformer." prefix) -> GGUF base name.
# Conv1D weights ([in, out] in HF) are transposed into PyTorch's Linear [out, in] order.
LAYER_MAP = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
             "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
CONV1D = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
GLOBAL_MAP = {"wte": "token_embd", "wpe": "position_embd", "ln_f": "output_norm", "lm_head": "output"}


def _looks_special(tok: str) -> bool:
    # convert_hf_to_gguf's does_token_look_special
    return (tok in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (tok.startswith("<|") and tok.endswith("|>"))
            or (tok.startswith("<\uff5c") and tok.endswith("\uff5c>"))
            or (tok.startswith("<unused") and tok.endswith(">")))


@dataclass
class GPT2Expect:
    config: dict
    # (key, value type, value, required, array elem type)
    metadata: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)       # gguf name -> float32 row-major array
    always_f32: set = field(default_factory=set)      # gguf names that stay F32 in f16/bf16 files
    notes: list = field(default_factory=list)


def _load_json(path: str):
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return None


def vocab_and_types(folder: str, vocab_size: int | None):
    tj = _load_json(os.path.join(folder, "tokenizer.json"))
    if tj is not None:
        vocab = dict(tj["model"]["vocab"])
        added = tj.get("added_tokens") or []
    else:
        vocab = _load_json(os.path.join(folder, "vocab.json"))
        if vocab is None:
            raise FileNotFoundError("neither tokenizer.json nor vocab.json")
        added = [{"id": i, "content": c, "special": True}
                 for c, i in (_load_json(os.path.join(folder, "added_tokens.json")) or {}).items()]
    for a in added:                       # a fast tokenizer's vocab includes its added tokens
        vocab.setdefault(a["content"], a["id"])
    added_by_id = {a["id"]: a for a in added}
    rev = {i: t for t, i in vocab.items()}
    n = vocab_size if vocab_size is not None else len(vocab)
    if rev and max(rev) >= n:
        raise ValueError(f"token id {max(rev)} >= vocab_size {n}")
    tokens, types = [], []
    for i in range(n):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
            continue
        tok = rev[i]
        if i in added_by_id and added_by_id[i]["content"] == tok:
            if added_by_id[i].get("special") or _looks_special(tok):
                types.append(TOKEN_CONTROL)
            else:
                tok = tok.replace("\u2581", " ")
                types.append(TOKEN_USER_DEFINED)
        else:
            types.append(TOKEN_NORMAL)
        tokens.append(tok)
    return tokens, types


def merges(folder: str) -> list[str]:
    tj = _load_json(os.path.join(folder, "tokenizer.json"))
    if tj is not None:
        m = tj.get("model", {}).get("merges")
        if isinstance(m, list) and m:
            if isinstance(m[0], str):
                return list(m)
            # transformers >= 4.45 pair format; spaces inside a part are encoded as U+0120
            return [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair)
                    for pair in m]
    out = []
    path = os.path.join(folder, "merges.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if lines and lines[0].strip().startswith("#"):
            lines = lines[1:]
        for line in lines:
            parts = line.strip().split()
            if len(parts) == 2:
                out.append(f"{parts[0]} {parts[1]}")
    return out


def special_ids(folder: str) -> tuple[dict[str, int], dict[str, bool], str | None]:
    """SpecialVocab: tokenizer_config.json's *_token looked up among tokenizer.json's
    added_tokens first, then config.json's *_token_id for kinds still unset."""
    tj = _load_json(os.path.join(folder, "tokenizer.json")) or {}
    tc = _load_json(os.path.join(folder, "tokenizer_config.json"))
    cfg = _load_json(os.path.join(folder, "config.json")) or {}
    added = tj.get("added_tokens") or []
    ids: dict[str, int] = {}
    add: dict[str, bool] = {}
    chat = None
    if tc:
        chat = tc.get("chat_template") if isinstance(tc.get("chat_template"), str) else None
        for kind, _ in SPECIAL_KINDS:
            if isinstance(tc.get(f"add_{kind}_token"), bool):
                add[kind] = tc[f"add_{kind}_token"]
            entry = tc.get(f"{kind}_token")
            content = entry.get("content") if isinstance(entry, dict) else entry
            if not isinstance(content, str):
                continue
            tid = next((a.get("id") for a in added if a.get("content") == content), None)
            if isinstance(tid, int) and kind not in ids:
                ids[kind] = tid
    for kind, _ in SPECIAL_KINDS:
        tid = cfg.get(f"{kind}_token_id")
        if isinstance(tid, int) and not isinstance(tid, bool) and kind not in ids:
            ids[kind] = tid
    return ids, add, chat


def expect(folder: str, outtype_ggml: str = "F32", pre: str = "gpt-2") -> GPT2Expect:
    cfg = _load_json(os.path.join(folder, "config.json"))
    if cfg is None:
        raise FileNotFoundError(f"{folder}/config.json")
    e = GPT2Expect(cfg)
    n_embd, n_layer, n_head = cfg["n_embd"], cfg["n_layer"], cfg["n_head"]
    n_ctx = cfg.get("n_ctx", cfg.get("n_positions"))
    # convert_hf_to_gguf writes 4*n_embd regardless of n_inner; a set n_inner would make
    # that wrong, so the oracle follows the real MLP width in that case
    n_ff = cfg.get("n_inner") or 4 * n_embd
    if cfg.get("n_inner"):
        e.notes.append(f"n_inner={cfg['n_inner']} is set; llama.cpp's converter would still write 4*n_embd")
    ftype = {"F32": 0, "F16": 1, "BF16": 32}[outtype_ggml]
    tokens, types = vocab_and_types(folder, cfg.get("vocab_size"))
    md = e.metadata
    md += [("general.architecture", VT_STRING, "gpt2", True, None),
           ("gpt2.block_count", VT_UINT32, n_layer, True, None),
           ("gpt2.context_length", VT_UINT32, n_ctx, True, None),
           ("gpt2.embedding_length", VT_UINT32, n_embd, True, None),
           ("gpt2.feed_forward_length", VT_UINT32, n_ff, True, None),
           ("gpt2.attention.head_count", VT_UINT32, n_head, True, None),
           ("gpt2.attention.layer_norm_epsilon", VT_FLOAT32, cfg.get("layer_norm_epsilon", 1e-5), True, None),
           ("general.file_type", VT_UINT32, ftype, True, None),
           ("tokenizer.ggml.model", VT_STRING, "gpt2", True, None),
           ("tokenizer.ggml.pre", VT_STRING, pre, True, None),
           ("tokenizer.ggml.tokens", VT_ARRAY, tokens, True, VT_STRING),
           ("tokenizer.ggml.token_type", VT_ARRAY, types, True, VT_INT32)]
    mg = merges(folder)
    if mg:
        md.append(("tokenizer.ggml.merges", VT_ARRAY, mg, True, VT_STRING))
    ids, add, chat = special_ids(folder)
    for kind, key in SPECIAL_KINDS:
        if kind in ids:
            # bos/eos are what llama.cpp needs; the others are checked when present
            md.append((key, VT_UINT32, ids[kind], kind in ("bos", "eos"), None))
    for kind, val in add.items():
        md.append((f"tokenizer.ggml.add_{kind}_token", VT_BOOL, val, False, None))
    if chat is not None:
        md.append(("tokenizer.chat_template", VT_STRING, chat, False, None))

    st = SafetensorsFolder(folder)
    for name in st.names():
        base = name[len("transformer."):] if name.startswith("transformer.") else name
        if base.endswith((".attn.bias", ".attn.masked_bias")):
            continue   # causal-mask buffers, dropped by the converter
        stem, _, suffix = base.rpartition(".")
        arr = st.tensor_array(name).astype(np.float32)
        if stem.startswith("h."):
            _, bid, mod = stem.split(".", 2)
            if mod not in LAYER_MAP:
                raise ValueError(f"unexpected tensor {name}")
            gname = f"blk.{int(bid)}.{LAYER_MAP[mod]}.{suffix}"
            if mod in CONV1D and suffix == "weight":
                arr = np.ascontiguousarray(arr.T)
        elif stem in GLOBAL_MAP:
            gname = f"{GLOBAL_MAP[stem]}.{suffix}"
        else:
            raise ValueError(f"unexpected tensor {name}")
        e.tensors[gname] = arr
        # convert_hf_to_gguf keeps 1-D tensors, *_norm.weight, biases and position_embd in F32
        if arr.ndim <= 1 or gname.endswith("_norm.weight") or not gname.endswith(".weight") \
                or gname == "position_embd.weight":
            e.always_f32.add(gname)
    st.close()
    return e
