#!/usr/bin/python3
"""Write a Hugging Face model folder with random weights of small but real shapes.

    make_random_model.py --arch llama|llama3|qwen2|gpt2|bert|mistral --out DIR
                         [--seed S] [--dtype f32|f16|bf16] [--size tiny|small]
                         [--shards N] [--tie | --no-tie] [--sliding-window W]

Writes config.json (the fields transformers' config class for that model_type uses),
generation_config.json, model.safetensors (or N shards + model.safetensors.index.json, written
by the small safetensors writer below: u64 LE header length | JSON header padded with spaces
to a multiple of 8 | raw little-endian bytes), tokenizer.json + tokenizer_config.json +
special_tokens_map.json (byte-level BPE learnt from a short built-in text, GPT-2's
byte-to-unicode spelling, reserved special tokens filling up to the vocab size; BERT: a
WordPiece vocabulary with [PAD]=0, [unused*], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103,
plus vocab.txt and sentence-transformers' modules.json / 1_Pooling / 2_Normalize).

Weights: normal(0, 0.02); norm weights 1 + 0.1*normal; norm/linear biases 0.02*normal.
Everything is drawn in float32 from numpy's default_rng([seed, index of arch in ARCHES]), then rounded to the dtype
(f16: numpy round-to-nearest-even; bf16: round-to-nearest-even on the top 16 bits).

Defaults per arch (like the real model each imitates):
    llama   Llama-2 style, rope_theta 1e4, untied, <unk>=0 <s>=1 </s>=2 then bytes
    llama3  Llama-3.2 style, rope_theta 5e5, rope_scaling llama3 (factor 8, low 1, high 4,
            original_max_position_embeddings 64), tied embeddings
    mistral rope_theta 1e4, sliding_window 4096 (--sliding-window to shrink), untied
    qwen2   q/k/v biases, no o_proj bias, rope_theta 1e6, rms_norm_eps 1e-6, tied
    gpt2    Conv1D [in, out] weights, learned positions, n_inner null (4*n_embd), tied
    bert    type_vocab_size 2, layer_norm_eps 1e-12, pooler included, mean pooling + Normalize
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modelfile import f32_to_bf16_bits  # noqa: E402

ARCHES = ("llama", "llama3", "qwen2", "gpt2", "bert", "mistral")
SIZES = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=160, vocab=320, max_pos=256),
    "small": dict(hidden=256, layers=4, heads=8, kv_heads=2, ffn=704, vocab=1024, max_pos=512),
}
TRANSFORMERS_VERSION = "4.44.2"
TORCH_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
ST_DTYPE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}

CORPUS = """Once upon a time, there was a little girl named Lily. She loved to play outside in the park.
One day, she saw a big, red ball. She wanted to play with it, but it was too high. Lily asked her mom
for help. Her mom said, "Let's get the ball together!" They walked to the tree and her mom reached up.
The ball fell down and Lily was very happy. She said thank you to her mom and they played all day.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Hello world! This is a small test of the tokenizer, with numbers like 12, 345 and 6789, and some
punctuation: commas, periods. Questions? Yes! In the morning the sun was shining and the birds were
singing in the trees. The children went to school, and the teacher told them a story about a dragon
who lived in a cave near the sea. The dragon was kind and liked to help the people of the town.
"""

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


# --------------------------------------------------------------------------------------
# safetensors writer
# --------------------------------------------------------------------------------------

def encode(a: np.ndarray, dtype: str) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "f32":
        return a.astype("<f4").tobytes()
    if dtype == "f16":
        return a.astype("<f2").tobytes()
    if dtype == "bf16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path: str, tensors: dict, dtype: str, metadata=None) -> int:
    """tensors: name -> float32 array (written in name order). Returns the data size."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        b = encode(tensors[name], dtype)
        header[name] = {"dtype": ST_DTYPE[dtype], "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    return off


def write_weights(out: str, tensors: dict, dtype: str, shards: int) -> None:
    meta = {"format": "pt"}
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), tensors, dtype, meta)
        return
    names = sorted(tensors)
    groups = [names[i::shards] for i in range(shards)]
    weight_map = {}
    total = 0
    for k, grp in enumerate(groups):
        fn = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        total += write_safetensors(os.path.join(out, fn), {n: tensors[n] for n in grp}, dtype, meta)
        for n in grp:
            weight_map[n] = fn
    with open(os.path.join(out, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)


# --------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------

def bytes_to_unicode() -> dict:
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


GPT2_PRETOK = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def learn_bpe(n_merges: int, text: str = CORPUS) -> list[tuple[str, str]]:
    b2u = bytes_to_unicode()
    words = Counter(tuple(b2u[b] for b in w.encode("utf-8")) for w in GPT2_PRETOK.findall(text))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # deterministic tie-break
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        nw = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] += c
        words = nw
    return merges


def added_token(i, content, special=True):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def bpe_tokenizer(arch: str, vocab_size: int) -> tuple[dict, dict, dict, dict]:
    """(tokenizer.json, tokenizer_config.json, special_tokens_map.json, config ids)"""
    b2u = bytes_to_unicode()
    byte_tokens = list(b2u.values())   # GPT-2 order: printable bytes first
    if arch in ("llama", "mistral"):
        lead = ["<unk>", "<s>", "</s>"]
        tail = []
        special = {"bos": "<s>", "eos": "</s>", "unk": "<unk>"}
    elif arch == "llama3":
        lead = []
        tail = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        special = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>"}
    elif arch == "qwen2":
        lead = []
        tail = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        special = {"eos": "<|im_end|>", "pad": "<|endoftext|>"}
    elif arch == "gpt2":
        lead = []
        tail = ["<|endoftext|>"]
        special = {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"}
    else:
        raise ValueError(arch)
    n_merge_budget = vocab_size - len(lead) - 256 - len(tail)
    if n_merge_budget < 0:
        raise ValueError("vocab too small")
    merges = learn_bpe(n_merge_budget)
    n_reserved = n_merge_budget - len(merges)
    if arch == "gpt2":
        reserved = [f"<|reserved_{i}|>" for i in range(n_reserved)]
        tail = reserved + tail         # GPT-2 keeps <|endoftext|> as the last id
    else:
        tail = tail + [f"<|reserved_special_token_{i}|>" for i in range(n_reserved)]
    vocab = {}
    for t in lead + byte_tokens + [a + b for a, b in merges] + tail:
        if t in vocab:
            raise AssertionError(f"duplicate token {t!r}")
        vocab[t] = len(vocab)
    assert len(vocab) == vocab_size, (len(vocab), vocab_size)
    added = [added_token(vocab[t], t) for t in lead + tail]

    if arch == "llama3":
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        post = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [vocab["<|begin_of_text|>"]],
                                                      "tokens": ["<|begin_of_text|>"]}}}]}
        normalizer = None
    elif arch == "qwen2":
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        normalizer = {"type": "NFC"}
    else:
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
        normalizer = None
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    tcfg = {
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                    "single_word", "special")} for a in added},
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1 << 20,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    for kind, t in special.items():
        tcfg[f"{kind}_token"] = t
    if arch == "gpt2":
        tcfg.update({"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "model_max_length": 1024})
    if arch in ("llama", "mistral"):
        tcfg.update({"add_bos_token": True, "add_eos_token": False, "tokenizer_class": "LlamaTokenizerFast"})
    if arch == "llama3":
        tcfg["chat_template"] = LLAMA3_CHAT_TEMPLATE
    if arch == "qwen2":
        tcfg.update({"bos_token": None, "chat_template": CHATML_TEMPLATE, "errors": "replace",
                     "tokenizer_class": "Qwen2Tokenizer", "split_special_tokens": False})
    stm = {f"{k}_token": v for k, v in special.items()}
    ids = {k: vocab[v] for k, v in special.items()}
    return tok, tcfg, stm, ids


BERT_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()")


def wordpiece_tokenizer(vocab_size: int) -> tuple[dict, dict, dict, list[str]]:
    toks = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    toks += BERT_CHARS + ["##" + c for c in BERT_CHARS if c.isalnum()]
    words = Counter(w.lower() for w in re.findall(r"[A-Za-z]+", CORPUS))
    for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(toks) >= vocab_size:
            break
        if len(w) > 1 and w not in toks:
            toks.append(w)
    i = 99
    while len(toks) < vocab_size:
        toks.append(f"[unused{i}]")
        i += 1
    toks = toks[:vocab_size]
    if vocab_size <= 103:
        raise ValueError("BERT vocab must exceed 103")
    vocab = {t: i for i, t in enumerate(toks)}
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    added = [added_token(vocab[t], t) for t in special]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [vocab[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    tcfg = {
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                    "single_word", "special")} for a in added},
        "clean_up_tokenization_spaces": True, "cls_token": "[CLS]", "do_basic_tokenize": True,
        "do_lower_case": True, "mask_token": "[MASK]", "model_max_length": 512, "never_split": None,
        "pad_token": "[PAD]", "sep_token": "[SEP]", "strip_accents": None, "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]",
    }
    stm = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
           "unk_token": "[UNK]"}
    return tok, tcfg, stm, toks


# --------------------------------------------------------------------------------------
# weights + configs
# --------------------------------------------------------------------------------------

class Rand:
    def __init__(self, seed: int, arch: str = ""):
        # the arch joins the seed so that, e.g., llama and mistral of one seed differ
        self.rng = np.random.default_rng([seed, ARCHES.index(arch) if arch in ARCHES else 0])

    def w(self, *shape):
        return (self.rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    def norm(self, n):
        return (1.0 + 0.1 * self.rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    def bias(self, n):
        return (0.02 * self.rng.standard_normal(n, dtype=np.float32)).astype(np.float32)


def llama_family(arch: str, s: dict, r: Rand, dtype: str, tie: bool, window, ids: dict):
    D, L, H, KV, FF, V, P = (s[k] for k in ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "max_pos"))
    hd = D // H
    t = {"model.embed_tokens.weight": r.w(V, D)}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = r.norm(D)
        t[p + "self_attn.q_proj.weight"] = r.w(H * hd, D)
        t[p + "self_attn.k_proj.weight"] = r.w(KV * hd, D)
        t[p + "self_attn.v_proj.weight"] = r.w(KV * hd, D)
        t[p + "self_attn.o_proj.weight"] = r.w(D, H * hd)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = r.bias(H * hd)
            t[p + "self_attn.k_proj.bias"] = r.bias(KV * hd)
            t[p + "self_attn.v_proj.bias"] = r.bias(KV * hd)
        t[p + "post_attention_layernorm.weight"] = r.norm(D)
        t[p + "mlp.gate_proj.weight"] = r.w(FF, D)
        t[p + "mlp.up_proj.weight"] = r.w(FF, D)
        t[p + "mlp.down_proj.weight"] = r.w(D, FF)
    t["model.norm.weight"] = r.norm(D)
    if not tie:
        t["lm_head.weight"] = r.w(V, D)

    common = {
        "attention_dropout": 0.0, "bos_token_id": ids.get("bos"), "eos_token_id": ids.get("eos"),
        "hidden_act": "silu", "hidden_size": D, "initializer_range": 0.02, "intermediate_size": FF,
        "max_position_embeddings": P, "num_attention_heads": H, "num_hidden_layers": L,
        "num_key_value_heads": KV, "rope_scaling": None, "tie_word_embeddings": tie,
        "torch_dtype": TORCH_DTYPE[dtype], "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "vocab_size": V,
    }
    if arch in ("llama", "llama3"):
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
               "head_dim": hd, "mlp_bias": False, "pretraining_tp": 1, "rms_norm_eps": 1e-5,
               "rope_theta": 10000.0, **common}
        if arch == "llama3":
            cfg["rope_theta"] = 500000.0
            cfg["rope_scaling"] = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                   "original_max_position_embeddings": 64, "rope_type": "llama3"}
    elif arch == "mistral":
        cfg = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "head_dim": hd,
               "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": window if window else 4096, **common}
        cfg.pop("rope_scaling")
    elif arch == "qwen2":
        cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_window_layers": L,
               "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": window if window else P,
               "use_sliding_window": False, **common}
        if cfg["bos_token_id"] is None:
            cfg["bos_token_id"] = ids.get("pad")
    else:
        raise ValueError(arch)
    return t, dict(sorted(cfg.items()))


def gpt2(s: dict, r: Rand, dtype: str, ids: dict):
    D, L, H, V, P = (s[k] for k in ("hidden", "layers", "heads", "vocab", "max_pos"))
    FF = 4 * D
    t = {"wte.weight": r.w(V, D), "wpe.weight": r.w(P, D)}
    for i in range(L):
        p = f"h.{i}."
        t[p + "ln_1.weight"], t[p + "ln_1.bias"] = r.norm(D), r.bias(D)
        t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"] = r.w(D, 3 * D), r.bias(3 * D)   # Conv1D [in, out]
        t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"] = r.w(D, D), r.bias(D)
        t[p + "ln_2.weight"], t[p + "ln_2.bias"] = r.norm(D), r.bias(D)
        t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = r.w(D, FF), r.bias(FF)
        t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = r.w(FF, D), r.bias(D)
    t["ln_f.weight"], t["ln_f.bias"] = r.norm(D), r.bias(D)
    cfg = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": ids["bos"], "embd_pdrop": 0.1, "eos_token_id": ids["eos"], "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-5, "model_type": "gpt2", "n_ctx": P, "n_embd": D, "n_head": H, "n_inner": None,
        "n_layer": L, "n_positions": P, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "torch_dtype": TORCH_DTYPE[dtype], "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True, "vocab_size": V,
    }
    return t, cfg


def bert(s: dict, r: Rand, dtype: str):
    D, L, H, FF, V, P = (s[k] for k in ("hidden", "layers", "heads", "ffn", "vocab", "max_pos"))
    t = {"embeddings.word_embeddings.weight": r.w(V, D), "embeddings.position_embeddings.weight": r.w(P, D),
         "embeddings.token_type_embeddings.weight": r.w(2, D),
         "embeddings.LayerNorm.weight": r.norm(D), "embeddings.LayerNorm.bias": r.bias(D)}
    for i in range(L):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"], t[p + f"attention.self.{n}.bias"] = r.w(D, D), r.bias(D)
        t[p + "attention.output.dense.weight"], t[p + "attention.output.dense.bias"] = r.w(D, D), r.bias(D)
        t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"] = r.norm(D), r.bias(D)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = r.w(FF, D), r.bias(FF)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = r.w(D, FF), r.bias(D)
        t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"] = r.norm(D), r.bias(D)
    t["pooler.dense.weight"], t["pooler.dense.bias"] = r.w(D, D), r.bias(D)
    cfg = {
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "classifier_dropout": None,
        "gradient_checkpointing": False, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": D,
        "initializer_range": 0.02, "intermediate_size": FF, "layer_norm_eps": 1e-12, "max_position_embeddings": P,
        "model_type": "bert", "num_attention_heads": H, "num_hidden_layers": L, "pad_token_id": 0,
        "position_embedding_type": "absolute", "torch_dtype": TORCH_DTYPE[dtype],
        "transformers_version": TRANSFORMERS_VERSION, "type_vocab_size": 2, "use_cache": True, "vocab_size": V,
    }
    return t, cfg


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def make(arch: str, out: str, seed: int = 0, dtype: str = "f32", size: str = "tiny", shards: int = 1,
         tie=None, window=None) -> str:
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}")
    s = SIZES[size]
    os.makedirs(out, exist_ok=True)
    r = Rand(seed, arch)
    if arch == "bert":
        tok, tcfg, stm, toks = wordpiece_tokenizer(s["vocab"])
        tensors, cfg = bert(s, r, dtype)
        with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(toks) + "\n")
        dump(os.path.join(out, "modules.json"), [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])
        os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
        os.makedirs(os.path.join(out, "2_Normalize"), exist_ok=True)
        dump(os.path.join(out, "1_Pooling", "config.json"), {
            "word_embedding_dimension": s["hidden"], "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False, "include_prompt": True})
        dump(os.path.join(out, "sentence_bert_config.json"), {"max_seq_length": s["max_pos"], "do_lower_case": False})
    else:
        tok, tcfg, stm, ids = bpe_tokenizer(arch, s["vocab"])
        if arch == "gpt2":
            tensors, cfg = gpt2(s, r, dtype, ids)
        else:
            if tie is None:
                tie = arch in ("llama3", "qwen2")
            tensors, cfg = llama_family(arch, s, r, dtype, tie, window, ids)
        gen = {"_from_model_config": True, "transformers_version": TRANSFORMERS_VERSION}
        if cfg.get("bos_token_id") is not None:
            gen["bos_token_id"] = cfg["bos_token_id"]
        if cfg.get("eos_token_id") is not None:
            gen["eos_token_id"] = cfg["eos_token_id"]
        dump(os.path.join(out, "generation_config.json"), gen)
        if arch in ("gpt2", "qwen2"):   # the slow-tokenizer files, as such folders usually carry them
            dump(os.path.join(out, "vocab.json"), tok["model"]["vocab"])
            with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
                f.write("#version: 0.2\n" + "\n".join(tok["model"]["merges"]) + "\n")
    dump(os.path.join(out, "config.json"), cfg)
    dump(os.path.join(out, "tokenizer.json"), tok)
    dump(os.path.join(out, "tokenizer_config.json"), tcfg)
    dump(os.path.join(out, "special_tokens_map.json"), stm)
    write_weights(out, tensors, dtype, shards)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="write a random-weight Hugging Face model folder")
    ap.add_argument("--arch", required=True, choices=ARCHES)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32")
    ap.add_argument("--size", choices=tuple(SIZES), default="tiny")
    ap.add_argument("--shards", type=int, default=1, help="write N safetensors shards + index")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--tie", dest="tie", action="store_true", default=None, help="tie lm_head to the embedding")
    g.add_argument("--no-tie", dest="tie", action="store_false")
    ap.add_argument("--sliding-window", type=int, help="mistral: sliding_window (default 4096)")
    a = ap.parse_args(argv)
    if a.arch in ("gpt2", "bert") and a.tie is not None:
        ap.error("--tie/--no-tie apply to llama, llama3, mistral and qwen2")
    make(a.arch, a.out, a.seed, a.dtype, a.size, a.shards, a.tie, a.sliding_window)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
