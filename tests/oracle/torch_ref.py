#!/usr/bin/python3
"""Independent PyTorch reference for the inference engine (float32, CPU, deterministic).

Written from the published architectures -- Hugging Face transformers' modeling code
(llama, mistral, qwen2, gpt2, bert; modeling_rope_utils for RoPE scaling), karpathy's
llama2.c (model.py / run.c / export.py) and sentence-transformers' Pooling / Normalize
modules -- and NOT from this project's C sources, so that it can serve as an oracle.

Inputs
    * a Hugging Face folder: config.json + model.safetensors (or model.safetensors.index.json
      with shards); model_type llama, mistral, qwen2, gpt2 (causal) or bert (encoder).
      Tensors stored as F16/BF16 are upcast to float32 exactly.
    * a llama2.c checkpoint (.bin): legacy layout (7 int32 header; vocab_size < 0 means a
      separate classifier follows the freq_cis tables) or version-1 ("ak42", 256-byte header).

Conventions (see also selftest_torch_ref.py, which checks each of them)
    RoPE layout   HF llama/mistral/qwen2 weights -> "half": pairs (x[i], x[i + d/2]),
                  out = x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1).
                  llama2.c checkpoints          -> "interleaved": pairs (x[2i], x[2i+1]),
                  as run.c and model.py (complex view of adjacent pairs) rotate them.
                  GGUF (llama.cpp) stores llama q/k rows permuted by the converter's
                  permute(): for each head, new row 2*i+j = old row j*(d/2)+i, after which
                  the interleaved rotation equals rotate-half on the original rows;
                  permute_rows_for_interleaved() below is that permutation.
                  Qwen2 in GGUF is NOT permuted (llama.cpp uses NEOX = rotate-half).
    frequencies   inv_freq[i] = 1 / theta^(2i/d) in float32 (d = head_dim); angle = pos * inv_freq.
                  rope_scaling: linear -> inv_freq / factor (== positions / factor);
                  llama3 -> transformers' _compute_llama3_parameters; yarn -> transformers'
                  _compute_yarn_parameters as of v5 (factor from rope_scaling; its
                  original_max_position_embeddings sets the correction range; mscale, truncate;
                  cos/sin multiplied by the attention factor -- 4.4x-4.5x releases differ);
                  dynamic/ntk/longrope are refused.
    RMSNorm       float32: x * rsqrt(mean(x^2) + eps) * w   (llama2.c: eps = 1e-5)
    attention     scores = q.k * head_dim^-0.5 (GPT-2: / sqrt(head_dim)), causal mask, softmax in
                  float32; GQA: query head h uses KV head h // (n_heads / n_kv_heads).
                  Sliding window (mistral sliding_window; qwen2 use_sliding_window for layers >=
                  max_window_layers): query at p sees key j iff j <= p and p - j < window.
    MLP           llama family: down(silu(gate(x)) * up(x)); llama2.c w1 = gate, w3 = up, w2 = down.
    GPT-2         Conv1D weights are [in, out] (y = x @ W + b); learned positions; pre-LayerNorm;
                  activation from config (gelu_new = tanh approximation); lm_head tied to wte.
    BERT          word + position (0..n-1) + token_type (0) embeddings -> LayerNorm; post-LN blocks;
                  hidden_act "gelu" = exact erf GELU; additive attention mask (1 - m) * finfo.min;
                  pooling: mean over mask==1 tokens (sum / clamp(count, 1e-9)) or CLS (token 0);
                  then L2 normalisation (F.normalize, eps 1e-12) unless --no-normalize.
    lm_head       tie_word_embeddings (default False for llama/mistral/qwen2, always tied for GPT-2)
                  -> the token embedding; an untied checkpoint without lm_head.weight falls back
                  to the embedding with a warning on stderr (what llama.cpp does).

CLI
    torch_ref.py logits   --model PATH --tokens 1,2,3 [--out FILE.npy]
    torch_ref.py generate --model PATH --tokens 1 -n 64 [--greedy] [--no-cache] [--stop ID,..]
    torch_ref.py embed    --model DIR --tokens 101,7592,102 [--tokens ...] [--pooling mean|cls]
                          [--no-normalize] [--out FILE.npy]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modelfile import SafetensorsFolder  # noqa: E402

torch.set_grad_enabled(False)
DT = torch.float32

LLAMA_FAMILY = ("llama", "mistral", "qwen2")
LLAMA2C_MAGIC = 0x616B3432  # "ak42"


def warn(msg: str) -> None:
    print(f"torch_ref: warning: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# activations (transformers ACT2FN names)
# --------------------------------------------------------------------------------------

def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    # transformers NewGELUActivation ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),                 # exact erf GELU
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_fast,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}")
    return ACTIVATIONS[name]


# --------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------

def rope_inv_freq(head_dim: int, theta: float, scaling: Optional[dict], max_pos: int) -> tuple[torch.Tensor, float]:
    """inv_freq [head_dim/2] (float32) and the attention factor that multiplies cos/sin."""
    base_inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if not scaling:
        return base_inv, 1.0
    rtype = scaling.get("rope_type", scaling.get("type", "default"))
    if rtype == "default":
        return base_inv, 1.0
    if rtype == "linear":
        return base_inv / float(scaling["factor"]), 1.0
    if rtype == "llama3":
        factor = float(scaling["factor"])
        low_ff = float(scaling["low_freq_factor"])
        high_ff = float(scaling["high_freq_factor"])
        old_ctx = float(scaling["original_max_position_embeddings"])
        low_wl = old_ctx / low_ff
        high_wl = old_ctx / high_ff
        wavelen = 2 * math.pi / base_inv
        inv = torch.where(wavelen > low_wl, base_inv / factor, base_inv)
        smooth = (old_ctx / wavelen - low_ff) / (high_ff - low_ff)
        smoothed = (1 - smooth) * inv / factor + smooth * inv
        is_medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        return torch.where(is_medium, smoothed, inv), 1.0
    if rtype == "yarn":
        # transformers v5 / llama.cpp semantics: factor from rope_scaling (max_pos / original when
        # absent); original_max_position_embeddings (default max_pos) sets the correction range.
        orig = int(scaling.get("original_max_position_embeddings") or max_pos)
        factor = scaling.get("factor")
        factor = float(factor) if factor is not None else max_pos / orig

        def mscale_of(scale, m=1.0):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

        attn_factor = scaling.get("attention_factor")
        if attn_factor is None:
            ms, msa = scaling.get("mscale"), scaling.get("mscale_all_dim")
            attn_factor = mscale_of(factor, ms) / mscale_of(factor, msa) if ms and msa else mscale_of(factor)
        beta_fast = scaling.get("beta_fast") or 32
        beta_slow = scaling.get("beta_slow") or 1
        truncate = scaling.get("truncate", True)

        def corr_dim(n_rot):
            return (head_dim * math.log(orig / (n_rot * 2 * math.pi))) / (2 * math.log(theta))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, head_dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        pos_freqs = theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
        extra = 1.0 / pos_freqs
        inter = 1.0 / (factor * pos_freqs)
        extra_factor = 1 - ramp
        return inter * (1 - extra_factor) + extra * extra_factor, float(attn_factor)
    raise NotImplementedError(f"rope_scaling type {rtype!r} is not implemented in the reference")


def rope_cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor, attn_factor: float = 1.0):
    ang = positions.to(DT)[:, None] * inv_freq[None, :]          # [n, d/2]
    return ang.cos() * attn_factor, ang.sin() * attn_factor


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """x: [n, heads, d]; cos/sin: [n, d/2]."""
    c = cos[:, None, :]
    s = sin[:, None, :]
    if layout == "half":
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        cf = torch.cat([c, c], dim=-1)
        sf = torch.cat([s, s], dim=-1)
        rot = torch.cat([-x2, x1], dim=-1)
        return x * cf + rot * sf
    if layout == "interleaved":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        o0 = x0 * c - x1 * s
        o1 = x0 * s + x1 * c
        return torch.stack([o0, o1], dim=-1).flatten(-2)
    raise ValueError(layout)


def permute_rows_for_interleaved(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp convert_hf_to_gguf permute(): rows of each head reordered so that the
    rotate-half pairs (i, i + d/2) become adjacent pairs (2i, 2i+1). Works for weights
    [n_head*d, in] and biases [n_head*d]."""
    shape = w.shape
    return (w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).transpose(1, 2).reshape(shape))


def unpermute_rows_from_interleaved(w: torch.Tensor, n_head: int) -> torch.Tensor:
    shape = w.shape
    return (w.reshape(n_head, shape[0] // n_head // 2, 2, *shape[1:]).transpose(1, 2).reshape(shape))


# --------------------------------------------------------------------------------------
# causal decoder (llama family, llama2.c, GPT-2)
# --------------------------------------------------------------------------------------

@dataclass
class DecoderConfig:
    arch: str                      # "llama" (RMSNorm+RoPE+SwiGLU) or "gpt2"
    source: str                    # "hf" or "llama2c"
    model_type: str
    vocab_size: int
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    norm_eps: float
    act: str = "silu"
    rope_layout: Optional[str] = None     # "half" / "interleaved" / None (GPT-2)
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None
    max_pos: int = 2048
    windows: list = field(default_factory=list)  # per layer: None or window size
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[object] = None


class CausalLM:
    """weights (float32 torch tensors, Linear layout [out, in]):
    tok_embd [V,D], pos_embd [P,D] (gpt2), out_norm.w/.b, lm_head [V,D],
    l{i}.attn_norm.w/.b, l{i}.wq/.bq, .wk/.bk, .wv/.bv, .wo/.bo, l{i}.ffn_norm.w/.b,
    l{i}.w_gate (llama only), l{i}.w_up/.b_up, l{i}.w_down/.b_down."""

    def __init__(self, cfg: DecoderConfig, w: dict):
        self.cfg = cfg
        self.w = w
        self.act = activation(cfg.act)
        inv, af = (None, 1.0)
        if cfg.rope_layout is not None:
            inv, af = rope_inv_freq(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling, cfg.max_pos)
        self.inv_freq, self.attn_factor = inv, af
        if not cfg.windows:
            cfg.windows = [None] * cfg.n_layers

    # -- building blocks --
    def _norm(self, x, prefix):
        c = self.cfg
        if c.arch == "gpt2":
            return F.layer_norm(x, (x.shape[-1],), self.w[prefix + ".w"], self.w[prefix + ".b"], c.norm_eps)
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + c.norm_eps) * self.w[prefix + ".w"]

    def _lin(self, x, wname, bname=None):
        y = x @ self.w[wname].t()
        if bname is not None and bname in self.w:
            y = y + self.w[bname]
        return y

    def new_cache(self):
        return [{"k": None, "v": None} for _ in range(self.cfg.n_layers)]

    @staticmethod
    def cache_len(cache) -> int:
        k = cache[0]["k"]
        return 0 if k is None else k.shape[1]

    def forward(self, tokens, cache=None) -> torch.Tensor:
        """Logits [n, vocab] for tokens appended after what `cache` holds (None: fresh)."""
        c = self.cfg
        toks = torch.as_tensor(list(tokens), dtype=torch.long)
        n = toks.shape[0]
        if cache is None:
            cache = self.new_cache()
        start = self.cache_len(cache)
        pos = torch.arange(start, start + n, dtype=torch.long)
        if int(toks.min()) < 0 or int(toks.max()) >= c.vocab_size:
            raise ValueError(f"token id out of range [0, {c.vocab_size})")
        x = self.w["tok_embd"][toks]
        if c.arch == "gpt2":
            if start + n > self.w["pos_embd"].shape[0]:
                raise ValueError(f"position {start + n - 1} exceeds n_positions {self.w['pos_embd'].shape[0]}")
            x = x + self.w["pos_embd"][pos]
        if self.inv_freq is not None:
            cos, sin = rope_cos_sin(self.inv_freq, pos, self.attn_factor)
        H, KV, hd = c.n_heads, c.n_kv_heads, c.head_dim
        for i in range(c.n_layers):
            p = f"l{i}"
            h = self._norm(x, p + ".attn_norm")
            q = self._lin(h, p + ".wq", p + ".bq").view(n, H, hd)
            k = self._lin(h, p + ".wk", p + ".bk").view(n, KV, hd)
            v = self._lin(h, p + ".wv", p + ".bv").view(n, KV, hd)
            if self.inv_freq is not None:
                q = apply_rope(q, cos, sin, c.rope_layout)
                k = apply_rope(k, cos, sin, c.rope_layout)
            k = k.transpose(0, 1)  # [KV, n, hd]
            v = v.transpose(0, 1)
            lc = cache[i]
            if lc["k"] is not None:
                k = torch.cat([lc["k"], k], dim=1)
                v = torch.cat([lc["v"], v], dim=1)
            lc["k"], lc["v"] = k, v
            T = k.shape[1]
            rep = H // KV
            kk = k.repeat_interleave(rep, dim=0)   # head h -> kv head h // rep
            vv = v.repeat_interleave(rep, dim=0)
            qq = q.transpose(0, 1)                 # [H, n, hd]
            if c.arch == "gpt2":
                s = (qq @ kk.transpose(1, 2)) / torch.full([], float(hd) ** 0.5)
                if c.scale_attn_by_inverse_layer_idx:
                    s = s / float(i + 1)
            else:
                s = (qq @ kk.transpose(1, 2)) * (hd ** -0.5)
            kpos = torch.arange(T)
            allowed = kpos[None, :] <= pos[:, None]
            win = c.windows[i]
            if win is not None:
                allowed = allowed & ((pos[:, None] - kpos[None, :]) < win)
            s = s.masked_fill(~allowed[None], float("-inf"))
            a = torch.softmax(s.to(torch.float32), dim=-1)
            o = (a @ vv).transpose(0, 1).reshape(n, H * hd)
            x = x + self._lin(o, p + ".wo", p + ".bo")
            h = self._norm(x, p + ".ffn_norm")
            if c.arch == "gpt2":
                f = self._lin(self.act(self._lin(h, p + ".w_up", p + ".b_up")), p + ".w_down", p + ".b_down")
            else:
                g = self.act(self._lin(h, p + ".w_gate", p + ".b_gate"))
                u = self._lin(h, p + ".w_up", p + ".b_up")
                f = self._lin(g * u, p + ".w_down", p + ".b_down")
            x = x + f
        x = self._norm(x, "out_norm")
        return x @ self.w["lm_head"].t()

    def logits(self, tokens) -> np.ndarray:
        return self.forward(tokens).numpy().astype(np.float32)

    def generate(self, prompt, n_new: int, use_cache: bool = True, stop=()) -> list[int]:
        prompt = list(prompt)
        out: list[int] = []
        if use_cache:
            cache = self.new_cache()
            lg = self.forward(prompt, cache)[-1]
            for _ in range(n_new):
                nxt = int(torch.argmax(lg))
                out.append(nxt)
                if nxt in stop or len(out) == n_new:
                    break
                lg = self.forward([nxt], cache)[-1]
        else:
            seq = list(prompt)
            for _ in range(n_new):
                nxt = int(torch.argmax(self.forward(seq)[-1]))
                out.append(nxt)
                seq.append(nxt)
                if nxt in stop:
                    break
        return out


# --------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------

def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class _Names:
    """Looks tensors up with or without the usual wrapper prefixes."""

    def __init__(self, st: SafetensorsFolder, prefixes):
        self.st = st
        self.names = set(st.names())
        self.prefixes = prefixes

    def find(self, name: str) -> Optional[str]:
        for p in self.prefixes:
            if p + name in self.names:
                return p + name
        return None

    def has(self, name):
        return self.find(name) is not None

    def get(self, name: str) -> torch.Tensor:
        full = self.find(name)
        if full is None:
            raise KeyError(f"tensor {name!r} not found (tried prefixes {self.prefixes})")
        return _t(self.st.tensor_array(full).astype(np.float32))


def load_config(folder: str) -> dict:
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def load_llama_family_hf(folder: str, cfgj: dict) -> CausalLM:
    mt = cfgj["model_type"]
    st = SafetensorsFolder(folder)
    nm = _Names(st, ["", "model.", "language_model."])
    D = cfgj["hidden_size"]
    H = cfgj["num_attention_heads"]
    KV = cfgj.get("num_key_value_heads") or H
    hd = cfgj.get("head_dim") or D // H
    L = cfgj["num_hidden_layers"]
    windows = [None] * L
    if mt == "mistral" and cfgj.get("sliding_window"):
        windows = [int(cfgj["sliding_window"])] * L
    if mt == "qwen2" and cfgj.get("use_sliding_window") and cfgj.get("sliding_window"):
        mwl = cfgj.get("max_window_layers", L)
        windows = [int(cfgj["sliding_window"]) if i >= mwl else None for i in range(L)]
    if isinstance(cfgj.get("layer_types"), list) and cfgj.get("sliding_window"):   # newer configs spell it out
        windows = [int(cfgj["sliding_window"]) if t == "sliding_attention" else None for t in cfgj["layer_types"]]
    theta_default = 10000.0
    cfg = DecoderConfig(
        arch="llama", source="hf", model_type=mt, vocab_size=cfgj["vocab_size"], hidden=D, n_layers=L,
        n_heads=H, n_kv_heads=KV, head_dim=hd, ffn=cfgj["intermediate_size"],
        norm_eps=float(cfgj.get("rms_norm_eps", 1e-6)), act=cfgj.get("hidden_act", "silu"),
        rope_layout="half", rope_theta=float(cfgj.get("rope_theta", theta_default)),
        rope_scaling=cfgj.get("rope_scaling"), max_pos=int(cfgj.get("max_position_embeddings", 2048)),
        windows=windows, bos_token_id=cfgj.get("bos_token_id"), eos_token_id=cfgj.get("eos_token_id"))
    w = {"tok_embd": nm.get("embed_tokens.weight"), "out_norm.w": nm.get("norm.weight")}
    tie = bool(cfgj.get("tie_word_embeddings", False))
    if not tie and nm.has("lm_head.weight"):
        w["lm_head"] = nm.get("lm_head.weight")
    else:
        if not tie:
            warn("tie_word_embeddings is false but there is no lm_head.weight; using embed_tokens")
        w["lm_head"] = w["tok_embd"]
    for i in range(L):
        p, q = f"l{i}", f"layers.{i}."
        w[p + ".attn_norm.w"] = nm.get(q + "input_layernorm.weight")
        w[p + ".ffn_norm.w"] = nm.get(q + "post_attention_layernorm.weight")
        for short, hf in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "o_proj")):
            w[f"{p}.w{short}"] = nm.get(f"{q}self_attn.{hf}.weight")
            if nm.has(f"{q}self_attn.{hf}.bias"):
                w[f"{p}.b{short}"] = nm.get(f"{q}self_attn.{hf}.bias")
        for short, hf in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            w[f"{p}.w_{short}"] = nm.get(f"{q}mlp.{hf}.weight")
            if nm.has(f"{q}mlp.{hf}.bias"):
                w[f"{p}.b_{short}"] = nm.get(f"{q}mlp.{hf}.bias")
    st.close()
    return CausalLM(cfg, w)


def load_gpt2_hf(folder: str, cfgj: dict) -> CausalLM:
    st = SafetensorsFolder(folder)
    nm = _Names(st, ["", "transformer."])
    D = cfgj["n_embd"]
    H = cfgj["n_head"]
    L = cfgj["n_layer"]
    w = {"tok_embd": nm.get("wte.weight"), "pos_embd": nm.get("wpe.weight"),
         "out_norm.w": nm.get("ln_f.weight"), "out_norm.b": nm.get("ln_f.bias")}
    w["lm_head"] = w["tok_embd"]   # GPT2LMHeadModel always ties lm_head to wte
    ffn = None
    for i in range(L):
        p, q = f"l{i}", f"h.{i}."
        w[p + ".attn_norm.w"] = nm.get(q + "ln_1.weight")
        w[p + ".attn_norm.b"] = nm.get(q + "ln_1.bias")
        w[p + ".ffn_norm.w"] = nm.get(q + "ln_2.weight")
        w[p + ".ffn_norm.b"] = nm.get(q + "ln_2.bias")
        # Conv1D: weight [in, out], y = x @ W + b  ->  Linear layout [out, in] = W^T
        qkv = nm.get(q + "attn.c_attn.weight").t().contiguous()     # [3D, D]
        bqkv = nm.get(q + "attn.c_attn.bias")
        w[p + ".wq"], w[p + ".wk"], w[p + ".wv"] = qkv[:D], qkv[D:2 * D], qkv[2 * D:]
        w[p + ".bq"], w[p + ".bk"], w[p + ".bv"] = bqkv[:D], bqkv[D:2 * D], bqkv[2 * D:]
        w[p + ".wo"] = nm.get(q + "attn.c_proj.weight").t().contiguous()
        w[p + ".bo"] = nm.get(q + "attn.c_proj.bias")
        w[p + ".w_up"] = nm.get(q + "mlp.c_fc.weight").t().contiguous()
        w[p + ".b_up"] = nm.get(q + "mlp.c_fc.bias")
        w[p + ".w_down"] = nm.get(q + "mlp.c_proj.weight").t().contiguous()
        w[p + ".b_down"] = nm.get(q + "mlp.c_proj.bias")
        ffn = w[p + ".w_up"].shape[0]
    st.close()
    cfg = DecoderConfig(
        arch="gpt2", source="hf", model_type="gpt2", vocab_size=cfgj["vocab_size"], hidden=D, n_layers=L,
        n_heads=H, n_kv_heads=H, head_dim=D // H, ffn=ffn, norm_eps=float(cfgj.get("layer_norm_epsilon", 1e-5)),
        act=cfgj.get("activation_function", "gelu_new"), rope_layout=None,
        max_pos=int(cfgj.get("n_positions", 1024)),
        scale_attn_by_inverse_layer_idx=bool(cfgj.get("scale_attn_by_inverse_layer_idx", False)),
        bos_token_id=cfgj.get("bos_token_id"), eos_token_id=cfgj.get("eos_token_id"))
    if not cfgj.get("scale_attn_weights", True):
        raise NotImplementedError("scale_attn_weights = false")
    return CausalLM(cfg, w)


def read_llama2c(path: str) -> tuple[dict, dict]:
    """(header dict, numpy arrays) of a llama2.c checkpoint, legacy or version 1."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic == LLAMA2C_MAGIC:
        version = struct.unpack_from("<i", data, 4)[0]
        if version != 1:
            raise ValueError(f"llama2.c version {version} is not supported (only legacy and 1)")
        dim, hidden, L, H, KV, vocab, seq = struct.unpack_from("<7i", data, 8)
        shared = bool(data[36])
        off = 256
    else:
        version = 0
        dim, hidden, L, H, KV, vocab, seq = struct.unpack_from("<7i", data, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        off = 28
    hs = dim // H
    kvd = KV * hs
    fl = np.frombuffer(data, dtype="<f4", offset=off)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > fl.size:
            raise ValueError("llama2.c checkpoint is truncated")
        a = fl[pos:pos + n].reshape(shape).astype(np.float32)
        pos += n
        return a

    a = {}
    if version == 0:
        a["tok"] = take(vocab, dim)
        a["rms_att"] = take(L, dim)
        a["wq"] = take(L, dim, dim)
        a["wk"] = take(L, kvd, dim)
        a["wv"] = take(L, kvd, dim)
        a["wo"] = take(L, dim, dim)
        a["rms_ffn"] = take(L, dim)
        a["w1"] = take(L, hidden, dim)
        a["w2"] = take(L, dim, hidden)
        a["w3"] = take(L, hidden, dim)
        a["rms_final"] = take(dim)
        a["freq_cis_real"] = take(seq, hs // 2)
        a["freq_cis_imag"] = take(seq, hs // 2)
        if not shared:
            a["wcls"] = take(vocab, dim)
    else:
        a["rms_att"] = take(L, dim)
        a["rms_ffn"] = take(L, dim)
        a["rms_final"] = take(dim)
        a["tok"] = take(vocab, dim)
        a["wq"] = take(L, dim, dim)
        a["wk"] = take(L, kvd, dim)
        a["wv"] = take(L, kvd, dim)
        a["wo"] = take(L, dim, dim)
        a["w1"] = take(L, hidden, dim)
        a["w2"] = take(L, dim, hidden)
        a["w3"] = take(L, hidden, dim)
        if not shared:
            a["wcls"] = take(vocab, dim)
    if pos != fl.size:
        warn(f"{path}: {fl.size - pos} float32 values after the last tensor")
    hdr = dict(version=version, dim=dim, hidden_dim=hidden, n_layers=L, n_heads=H, n_kv_heads=KV,
               vocab_size=vocab, seq_len=seq, shared_classifier=shared)
    return hdr, a


def load_llama2c(path: str) -> CausalLM:
    h, a = read_llama2c(path)
    L = h["n_layers"]
    cfg = DecoderConfig(
        arch="llama", source="llama2c", model_type="llama2c", vocab_size=h["vocab_size"], hidden=h["dim"],
        n_layers=L, n_heads=h["n_heads"], n_kv_heads=h["n_kv_heads"], head_dim=h["dim"] // h["n_heads"],
        ffn=h["hidden_dim"], norm_eps=1e-5, act="silu", rope_layout="interleaved", rope_theta=10000.0,
        max_pos=h["seq_len"], bos_token_id=1, eos_token_id=2)
    w = {"tok_embd": _t(a["tok"]), "out_norm.w": _t(a["rms_final"])}
    w["lm_head"] = _t(a["wcls"]) if "wcls" in a else w["tok_embd"]
    for i in range(L):
        p = f"l{i}"
        w[p + ".attn_norm.w"] = _t(a["rms_att"][i])
        w[p + ".ffn_norm.w"] = _t(a["rms_ffn"][i])
        w[p + ".wq"], w[p + ".wk"], w[p + ".wv"], w[p + ".wo"] = (_t(a[k][i]) for k in ("wq", "wk", "wv", "wo"))
        w[p + ".w_gate"], w[p + ".w_down"], w[p + ".w_up"] = (_t(a[k][i]) for k in ("w1", "w2", "w3"))
    m = CausalLM(cfg, w)
    m.llama2c_header = h
    m.llama2c_freq = (a.get("freq_cis_real"), a.get("freq_cis_imag"))
    return m


# --------------------------------------------------------------------------------------
# BERT encoder + sentence-transformers pooling
# --------------------------------------------------------------------------------------

class BertEncoder:
    def __init__(self, cfgj: dict, w: dict, folder: Optional[str] = None):
        self.cfgj = cfgj
        self.w = w
        self.D = cfgj["hidden_size"]
        self.H = cfgj["num_attention_heads"]
        self.L = cfgj["num_hidden_layers"]
        self.eps = float(cfgj.get("layer_norm_eps", 1e-12))
        self.act = activation(cfgj.get("hidden_act", "gelu"))
        self.pad_id = int(cfgj.get("pad_token_id") or 0)
        if cfgj.get("position_embedding_type", "absolute") != "absolute":
            raise NotImplementedError("only absolute position embeddings")
        self.folder = folder

    def default_pooling(self) -> str:
        """sentence-transformers' 1_Pooling/config.json if the folder has one, else mean."""
        if self.folder:
            pc = os.path.join(self.folder, "1_Pooling", "config.json")
            if os.path.isfile(pc):
                with open(pc, encoding="utf-8") as f:
                    j = json.load(f)
                if j.get("pooling_mode_cls_token"):
                    return "cls"
                if j.get("pooling_mode_mean_tokens"):
                    return "mean"
        return "mean"

    def _ln(self, x, name):
        return F.layer_norm(x, (self.D,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].t() + self.w[name + ".bias"]

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor, token_type=None) -> torch.Tensor:
        """ids, mask: [B, T] -> last hidden state [B, T, D]."""
        B, T = ids.shape
        if T > self.w["embeddings.position_embeddings.weight"].shape[0]:
            raise ValueError("sequence longer than max_position_embeddings")
        if token_type is None:
            token_type = torch.zeros_like(ids)
        pos = torch.arange(T)
        x = (self.w["embeddings.word_embeddings.weight"][ids]
             + self.w["embeddings.token_type_embeddings.weight"][token_type]
             + self.w["embeddings.position_embeddings.weight"][pos][None])
        x = self._ln(x, "embeddings.LayerNorm")
        hd = self.D // self.H
        ext = (1.0 - mask.to(DT))[:, None, None, :] * torch.finfo(DT).min   # [B,1,1,T]
        for i in range(self.L):
            p = f"encoder.layer.{i}."
            q = self._lin(x, p + "attention.self.query").view(B, T, self.H, hd).transpose(1, 2)
            k = self._lin(x, p + "attention.self.key").view(B, T, self.H, hd).transpose(1, 2)
            v = self._lin(x, p + "attention.self.value").view(B, T, self.H, hd).transpose(1, 2)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + ext
            a = torch.softmax(s, dim=-1)
            ctx = (a @ v).transpose(1, 2).reshape(B, T, self.D)
            x = self._ln(self._lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inter = self.act(self._lin(x, p + "intermediate.dense"))
            x = self._ln(self._lin(inter, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embed(self, seqs: list, pooling: Optional[str] = None, normalize: bool = True) -> np.ndarray:
        pooling = pooling or self.default_pooling()
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, :len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[b, :len(s)] = 1
        if int(ids.max()) >= self.cfgj["vocab_size"] or int(ids.min()) < 0:
            raise ValueError("token id out of range")
        hs = self.hidden_states(ids, mask)
        if pooling == "mean":
            m = mask[..., None].expand(hs.shape).to(DT)
            e = (hs * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        elif pooling == "cls":
            e = hs[:, 0]
        else:
            raise ValueError(f"pooling {pooling!r}")
        if normalize:
            e = F.normalize(e, p=2, dim=1)
        return e.numpy().astype(np.float32)


BERT_LN_RENAMES = (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"))


def load_bert_hf(folder: str, cfgj: dict) -> BertEncoder:
    st = SafetensorsFolder(folder)
    w = {}
    for name in st.names():
        k = name
        for pre in ("bert.", "model."):
            if k.startswith(pre):
                k = k[len(pre):]
        for a, b in BERT_LN_RENAMES:
            k = k.replace(a, b)
        if k.startswith(("embeddings.", "encoder.")) and not k.endswith("position_ids"):
            w[k] = _t(st.tensor_array(name).astype(np.float32))
    st.close()
    return BertEncoder(cfgj, w, folder)


def load(path: str):
    """A CausalLM (HF llama/mistral/qwen2/gpt2 folder or llama2.c .bin) or a BertEncoder."""
    if os.path.isdir(path):
        cfgj = load_config(path)
        mt = cfgj.get("model_type")
        if mt in LLAMA_FAMILY:
            return load_llama_family_hf(path, cfgj)
        if mt == "gpt2":
            return load_gpt2_hf(path, cfgj)
        if mt == "bert":
            return load_bert_hf(path, cfgj)
        raise NotImplementedError(f"model_type {mt!r}")
    return load_llama2c(path)


# --------------------------------------------------------------------------------------
# llama2.c tokenizer (for decoding in the self-test)
# --------------------------------------------------------------------------------------

def read_llama2c_tokenizer(path: str, vocab_size: int) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    pos = 4  # int32 max_token_length
    pieces = []
    for _ in range(vocab_size):
        _score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + n])
        pos += n
    return pieces


def llama2c_decode(pieces: list[bytes], ids, prev: int = 1) -> str:
    """run.c decode(): strip the leading space after BOS, map <0xHH> to the raw byte."""
    out = b""
    for t in ids:
        p = pieces[t]
        if prev == 1 and p.startswith(b" "):
            p = p[1:]
        if len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">"):
            try:
                p = bytes([int(p[3:5], 16)])
            except ValueError:
                pass
        out += p
        prev = t
    return out.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def parse_ids(s: str) -> list[int]:
    s = s.strip()
    return [int(x) for x in s.replace(" ", ",").split(",") if x != ""]


def fmt_row(a: np.ndarray) -> str:
    return " ".join(f"{float(v):.9g}" for v in a)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a1 = sub.add_parser("logits", help="logits of every position of one causal forward pass")
    a1.add_argument("--model", required=True)
    a1.add_argument("--tokens", required=True)
    a1.add_argument("--out", help="save float32 [n_tokens, vocab] .npy instead of printing")
    a2 = sub.add_parser("generate", help="greedy continuation")
    a2.add_argument("--model", required=True)
    a2.add_argument("--tokens", required=True)
    a2.add_argument("-n", type=int, default=64)
    a2.add_argument("--greedy", action="store_true", help="(greedy is the only mode)")
    a2.add_argument("--no-cache", action="store_true", help="recompute the whole sequence each step")
    a2.add_argument("--stop", default="", help="comma-separated ids that end generation (kept in the output)")
    a3 = sub.add_parser("embed", help="BERT sentence embedding")
    a3.add_argument("--model", required=True)
    a3.add_argument("--tokens", required=True, action="append", help="one sequence; repeat for a padded batch")
    a3.add_argument("--pooling", choices=["mean", "cls"])
    a3.add_argument("--no-normalize", action="store_true")
    a3.add_argument("--out")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    m = load(args.model)
    if args.cmd in ("logits", "generate") and not isinstance(m, CausalLM):
        ap.error("this model is not a causal LM")
    if args.cmd == "embed" and not isinstance(m, BertEncoder):
        ap.error("embed needs a BERT folder")
    if args.cmd == "logits":
        lg = m.logits(parse_ids(args.tokens))
        if args.out:
            np.save(args.out, lg)
        else:
            for row in lg:
                print(fmt_row(row))
    elif args.cmd == "generate":
        stop = tuple(parse_ids(args.stop)) if args.stop else ()
        ids = m.generate(parse_ids(args.tokens), args.n, use_cache=not args.no_cache, stop=stop)
        print(" ".join(map(str, ids)))
    else:
        e = m.embed([parse_ids(t) for t in args.tokens], args.pooling, not args.no_normalize)
        if args.out:
            np.save(args.out, e)
        else:
            for row in e:
                print(fmt_row(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
