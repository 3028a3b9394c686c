#!/usr/bin/python3
"""Independent PyTorch reference for the training engine: gradients, LoRA, AdamW, schedules.

Written from the published architectures (via torch_ref.py's loaders, which follow Hugging Face
transformers' modeling code), PEFT's LoRA formulation and torch.optim.AdamW -- NOT from this
project's C sources (src/train/), so that it can serve as an oracle for them.
No pip packages: Debian's python3-torch + numpy; PEFT's math is re-implemented here.

Tensor names are llama.cpp's (the trainer's names, see include/llmops/train.h):
    token_embd.weight   position_embd.weight (GPT-2)   output_norm.weight/.bias   output.weight
    blk.N.attn_norm.weight/.bias  blk.N.attn_q/attn_k/attn_v/attn_output.weight/.bias
    blk.N.attn_qkv.weight/.bias (GPT-2's fused c_attn, Linear layout [3D, D])
    blk.N.ffn_norm.weight/.bias   blk.N.ffn_gate/ffn_up/ffn_down.weight/.bias
Linear weights are [out, in] (GPT-2's Conv1D [in, out] is transposed on load). A tied model
(GPT-2 always, tie_word_embeddings) has no output.weight: the logits use token_embd.weight.
LoRA factors of weight W are "W.lora_a" [r, in] and "W.lora_b" [out, r]:
    y = W x + b + (alpha / r) * B (A dropout(x))            (PEFT: lora_B(lora_A(dropout(x))) * scaling)
Rows of q/k are in Hugging Face order (rotate-half RoPE); --rope-layout interleaved permutes
the base q/k rows as llama.cpp's converter does and rotates adjacent pairs (a GGUF-loaded llama).

--base-gguf FILE.gguf (logits, grads, train): the frozen values come from a GGUF file with
the same tensor names (a quantized base: Q8_0/Q4_0 dequantized exactly), the config from --model;
with --base-gguf-linear-only only the blocks' weight matrices (QLoRA: embeddings/lm_head kept).

Numerics: float64 by default (--dtype float32 to match the C engine's precision); the base
weights are the file's values exactly (F16/BF16 upcast).

CLI (every subcommand prints its results; files are float32 safetensors)
  logits --model HF_DIR [--adapter PEFT_DIR[:SCALE]]... --ids 1,2,3 [--out F.npy]
        logits [n, vocab] of one causal pass of the base model with Hugging Face PEFT LoRA
        adapters applied (adapter_config.json: r, lora_alpha, target_modules, fan_in_fan_out,
        use_rslora, rank_pattern/alpha_pattern; adapter_model.safetensors names
        base_model.model.<module>.lora_A.weight [r, in], .lora_B.weight [out, r]); printed one
        row per line as torch_ref.py prints them (%.9g, space separated). --tokens = --ids.
  make-adapter --model HF_DIR --out PEFT_DIR [--rank 4] [--alpha 8] [--targets q,v] [--seed 0] [--rslora]
        a random PEFT adapter folder for that model (B nonzero); GPT-2 targets: qkv,o,up,down.
  merge --model HF_DIR --adapter PEFT_DIR[:SCALE]... --out HF_DIR2
        the HF folder with W <- W + scale * alpha/r * B A merged (Conv1D: W += (B A)^T), F32.
  grads --model HF_DIR --init TRAINABLE.safetensors --batch BATCH.json --out GRADS.safetensors
        [--alpha 16] [--rank R] [--expect-targets q,k,v,o,gate,up,down | --expect-full]
        [--dropout-masks MASKS.safetensors]
        TRAINABLE holds the trainable tensors with their current values: a name ending in
        .lora_a/.lora_b attaches a LoRA factor to its base weight, any other name replaces a
        base tensor (full fine-tuning; its values are used exactly). BATCH.json:
        {"tokens": [[...], ...], "targets": [[...], ...], "loss_scale": 0.01}; -1 targets are
        ignored, each row starts at position 0. loss = loss_scale * sum of cross-entropies.
        Writes d loss / d tensor for every tensor of TRAINABLE (same names and shapes), with
        metadata loss_sum (unscaled sum), n_counted; prints "loss_sum X" and "n_counted N".
        --logits-out F.safetensors: the logits [n_seq*seq_len, vocab] too (tensor "logits").
        --dropout-masks: LoRA dropout with a given realisation: tensor "W.dropout_mask"
        [n_seq*seq_len, in] multiplies the input of W's LoRA branch (PEFT's lora_dropout(x)).
  adamw --init INIT.safetensors --grads G1.safetensors [--grads G2 ...] --out FINAL.safetensors
        [schedule and optimizer options below]
        step s (0-based) sets p.grad = Gs (raw gradient), clip_grad_norm_(max_norm), then
        torch.optim.AdamW with lr = schedule(s); weight decay only for 2-D tensors (two param
        groups). Prints "lr s X" and "norm s X" per step. --moments also writes NAME.adam_m /
        NAME.adam_v.
  train --model HF_DIR --init INIT.safetensors --batch BATCH.json --steps N --out FINAL.safetensors
        end-to-end: N steps of zero_grad / forward-backward on the batch / clip / AdamW step.
        Prints "loss s X" (unscaled sum), "lr s X", "norm s X".
  lr [schedule options] --steps N   prints "lr STEP X" for steps 0..N-1; with lists
        (--schedule constant,linear,cosine --warmup 0,4) "lr-KIND-WARMUP STEP X" for each.

Schedule/optimizer options: --lr 1e-3 --schedule constant|linear|cosine --min-lr 0 --warmup 0
  --total-steps N --beta1 0.9 --beta2 0.999 --eps 1e-8 --weight-decay 0 --clip 0 (<=0: off).
  Schedule (include/llmops/train.h): step < warmup: lr*(step+1)/warmup; afterwards
  progress = (step - warmup) / max(1, total - warmup) clamped to [0, 1];
  constant: lr; linear: min_lr + (lr - min_lr)*(1 - progress);
  cosine: min_lr + (lr - min_lr)*0.5*(1 + cos(pi*progress)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import struct
import sys
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_ref as tr  # noqa: E402
from modelfile import GGUFFile, SafetensorsFile, SafetensorsFolder, dequantize  # noqa: E402

torch.set_grad_enabled(True)   # torch_ref switches autograd off globally on import


def die(msg: str) -> None:
    print(f"torch_train_ref: {msg}", file=sys.stderr)
    sys.exit(2)


def warn(msg: str) -> None:
    print(f"torch_train_ref: warning: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# safetensors I/O (float32)
# --------------------------------------------------------------------------------------

def write_st(path: str, tensors: dict, metadata: Optional[dict] = None) -> None:
    """name -> array/tensor, written as F32 in insertion order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, a in tensors.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a, dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def read_st(path: str) -> tuple[dict, dict]:
    """(name -> float32 numpy array in file order, metadata)."""
    st = SafetensorsFile(path)
    try:
        if st.problems:
            die(f"{path}: {'; '.join(st.problems)}")
        out = {}
        for name in st.names():
            out[name] = np.array(st.tensor_array(name), dtype=np.float32)
        return out, dict(st.metadata)
    finally:
        st.close()


# --------------------------------------------------------------------------------------
# the model: llama.cpp-named parameters, a batched differentiable forward with LoRA
# --------------------------------------------------------------------------------------

HF_LLAMA_LINEAR = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                   "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
HF_GPT2_LINEAR = {"attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "mlp.c_fc": "ffn_up",
                  "mlp.c_proj": "ffn_down"}
TARGET_NAMES = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
                "up": "ffn_up", "down": "ffn_down", "qkv": "attn_qkv",
                "q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down", "c_attn": "attn_qkv"}


class TrainModel:
    """cfg: torch_ref.DecoderConfig; base: llama.cpp name -> tensor (frozen values);
    params: name -> leaf tensor that replaces base[name] (full training);
    lora: base weight name -> list of [A, B, scale] (A [r, in], B [out, r])."""

    def __init__(self, folder: str, dtype=torch.float64, rope_layout: str = "neox"):
        m = tr.load(folder)
        if not isinstance(m, tr.CausalLM):
            die(f"{folder}: not a causal LM")
        self.folder = folder
        self.cfg = m.cfg
        self.dtype = dtype
        self.gpt2 = m.cfg.arch == "gpt2"
        w = m.w
        c = m.cfg
        b = {"token_embd.weight": w["tok_embd"], "output_norm.weight": w["out_norm.w"]}
        if "out_norm.b" in w:
            b["output_norm.bias"] = w["out_norm.b"]
        if "pos_embd" in w:
            b["position_embd.weight"] = w["pos_embd"]
        self.tied = w["lm_head"] is w["tok_embd"]
        if not self.tied:
            b["output.weight"] = w["lm_head"]
        for i in range(c.n_layers):
            p, q = f"l{i}", f"blk.{i}."
            for ours, theirs in (("attn_norm", "attn_norm"), ("ffn_norm", "ffn_norm")):
                b[q + ours + ".weight"] = w[p + "." + theirs + ".w"]
                if p + "." + theirs + ".b" in w:
                    b[q + ours + ".bias"] = w[p + "." + theirs + ".b"]
            if self.gpt2:
                b[q + "attn_qkv.weight"] = torch.cat([w[p + ".wq"], w[p + ".wk"], w[p + ".wv"]], 0)
                b[q + "attn_qkv.bias"] = torch.cat([w[p + ".bq"], w[p + ".bk"], w[p + ".bv"]], 0)
                lin = (("wo", "bo", "attn_output"), ("w_up", "b_up", "ffn_up"), ("w_down", "b_down", "ffn_down"))
            else:
                lin = (("wq", "bq", "attn_q"), ("wk", "bk", "attn_k"), ("wv", "bv", "attn_v"),
                       ("wo", "bo", "attn_output"), ("w_gate", "b_gate", "ffn_gate"), ("w_up", "b_up", "ffn_up"),
                       ("w_down", "b_down", "ffn_down"))
            for wn, bn, ours in lin:
                b[q + ours + ".weight"] = w[p + "." + wn]
                if p + "." + bn in w:
                    b[q + ours + ".bias"] = w[p + "." + bn]
        if rope_layout not in ("neox", "interleaved"):
            die(f"--rope-layout {rope_layout!r}")
        self.rope_layout = None
        if c.rope_layout is not None:
            if c.rope_layout != "half":
                die("only Hugging Face folders (rotate-half RoPE) are supported")
            self.rope_layout = "half" if rope_layout == "neox" else "interleaved"
            if rope_layout == "interleaved":     # what llama.cpp's converter does to llama q/k rows
                for i in range(c.n_layers):
                    for nm, heads in (("attn_q", c.n_heads), ("attn_k", c.n_kv_heads)):
                        for suf in (".weight", ".bias"):
                            key = f"blk.{i}.{nm}{suf}"
                            if key in b:
                                b[key] = tr.permute_rows_for_interleaved(b[key], heads).contiguous()
        self.base = {k: v.detach().to(dtype).contiguous() for k, v in b.items()}
        self.params: dict = {}
        self.lora: dict = {}
        self.inv_freq, self.attn_factor = (None, 1.0)
        if c.rope_layout is not None:
            self.inv_freq, self.attn_factor = tr.rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling, c.max_pos)
        self.lora_dropout = 0.0
        self.drop_masks: dict = {}

    def use_gguf_base(self, path: str, linear_only: bool = False) -> None:
        """Frozen values from a GGUF file with the same tensors (e.g. quantized by the engine): each
        base tensor is replaced by the file's tensor of that name, dequantized exactly (Q8_0, Q4_0,
        F16, BF16, F32). llama/mistral q/k rows in GGUF are permuted (llama.cpp's converter):
        kept with --rope-layout interleaved, un-permuted for neox. linear_only: only the blocks'
        weight matrices (QLoRA as bitsandbytes does it: nn.Linear layers quantized, embeddings and
        lm_head kept)."""
        g = GGUFFile(path)
        try:
            permuted = self.cfg.model_type in ("llama", "mistral")
            for name in list(self.base):
                if linear_only and not (name.startswith("blk.") and name.endswith(".weight")
                                        and self.base[name].dim() == 2):
                    continue
                info = g.tensor_info(name)
                if info is None:
                    die(f"{path}: no tensor {name!r}")
                a = dequantize(info.type_name, g.tensor_bytes(info), info.np_shape)
                t = torch.tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype)
                if tuple(t.shape) != tuple(self.base[name].shape):
                    die(f"{path}: {name} has shape {list(t.shape)}, the model {list(self.base[name].shape)}")
                m = re.fullmatch(r"blk\.\d+\.attn_([qk])\.(weight|bias)", name)
                if permuted and m and self.rope_layout == "half":
                    heads = self.cfg.n_heads if m.group(1) == "q" else self.cfg.n_kv_heads
                    t = tr.unpermute_rows_from_interleaved(t, heads).contiguous()
                self.base[name] = t
        finally:
            g.close()

    # -- parameters --
    def get(self, name: str) -> torch.Tensor:
        return self.params[name] if name in self.params else self.base[name]

    def has(self, name: str) -> bool:
        return name in self.params or name in self.base

    def lm_head(self) -> torch.Tensor:
        return self.get("output.weight") if self.has("output.weight") else self.get("token_embd.weight")

    def add_lora(self, wname: str, A: torch.Tensor, B: torch.Tensor, scale: float) -> None:
        if wname not in self.base:
            die(f"LoRA factor for {wname!r}, which the model does not have")
        W = self.base[wname]
        if W.dim() != 2 or A.dim() != 2 or B.dim() != 2:
            die(f"{wname}: LoRA factors must be 2-D")
        if A.shape[1] != W.shape[1] or B.shape[0] != W.shape[0] or A.shape[0] != B.shape[1]:
            die(f"{wname}: A {list(A.shape)} / B {list(B.shape)} do not fit W {list(W.shape)}")
        self.lora.setdefault(wname, []).append([A, B, scale])

    def delta(self, wname: str) -> torch.Tensor:
        """sum of scale * B A for the weight (what merging adds), [out, in]."""
        d = torch.zeros_like(self.base[wname])
        for A, B, s in self.lora.get(wname, []):
            d = d + s * (B @ A)
        return d

    # -- forward --
    def _lin(self, x, stem):
        y = x @ self.get(stem + ".weight").t()
        if self.has(stem + ".bias"):
            y = y + self.get(stem + ".bias")
        mask = self.drop_masks.get(stem + ".weight")
        for A, B, s in self.lora.get(stem + ".weight", []):
            if mask is not None:      # a given dropout realisation: PEFT's dropout(x) = mask * x
                if mask.numel() != x.numel():
                    die(f"dropout mask of {stem}.weight has {mask.numel()} values, its input {x.numel()}")
                xin = x * mask.reshape(x.shape)
            else:
                xin = F.dropout(x, self.lora_dropout, True) if self.lora_dropout > 0 else x
            y = y + s * ((xin @ A.t()) @ B.t())
        return y

    def _norm(self, x, stem):
        c = self.cfg
        if self.gpt2:
            return F.layer_norm(x, (x.shape[-1],), self.get(stem + ".weight"), self.get(stem + ".bias"), c.norm_eps)
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + c.norm_eps) * self.get(stem + ".weight")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] (each row from position 0, causal) -> logits [B, T, V]."""
        c = self.cfg
        Bn, T = tokens.shape
        if int(tokens.min()) < 0 or int(tokens.max()) >= c.vocab_size:
            die(f"token id out of range [0, {c.vocab_size})")
        pos = torch.arange(T)
        x = self.get("token_embd.weight")[tokens]
        if self.gpt2:
            if T > self.base["position_embd.weight"].shape[0]:
                die("sequence longer than n_positions")
            x = x + self.get("position_embd.weight")[pos][None]
        cos = sin = None
        if self.inv_freq is not None:
            ang = pos.to(torch.float64)[:, None] * self.inv_freq.to(torch.float64)[None, :]
            cos = (ang.cos() * self.attn_factor).to(self.dtype)
            sin = (ang.sin() * self.attn_factor).to(self.dtype)
        H, KV, hd = c.n_heads, c.n_kv_heads, c.head_dim
        kpos = torch.arange(T)
        for i in range(c.n_layers):
            p = f"blk.{i}."
            h = self._norm(x, p + "attn_norm")
            if self.gpt2:
                qkv = self._lin(h, p + "attn_qkv")
                D = H * hd
                q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
            else:
                q, k, v = self._lin(h, p + "attn_q"), self._lin(h, p + "attn_k"), self._lin(h, p + "attn_v")
            q = q.reshape(Bn, T, H, hd)
            k = k.reshape(Bn, T, KV, hd)
            v = v.reshape(Bn, T, KV, hd)
            if cos is not None:
                q = tr.apply_rope(q, cos, sin, self.rope_layout)
                k = tr.apply_rope(k, cos, sin, self.rope_layout)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)      # [B, heads, T, hd]
            rep = H // KV
            k = k.repeat_interleave(rep, dim=1)     # query head h uses kv head h // rep
            v = v.repeat_interleave(rep, dim=1)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            if self.gpt2 and c.scale_attn_by_inverse_layer_idx:
                s = s / float(i + 1)
            allowed = kpos[None, :] <= pos[:, None]
            win = c.windows[i] if c.windows else None
            if win is not None:
                allowed = allowed & ((pos[:, None] - kpos[None, :]) < win)
            s = s.masked_fill(~allowed, float("-inf"))
            a = torch.softmax(s, dim=-1)
            o = (a @ v).transpose(1, 2).reshape(Bn, T, H * hd)
            x = x + self._lin(o, p + "attn_output")
            h = self._norm(x, p + "ffn_norm")
            act = tr.activation(c.act)
            if self.gpt2:
                f = self._lin(act(self._lin(h, p + "ffn_up")), p + "ffn_down")
            else:
                f = self._lin(act(self._lin(h, p + "ffn_gate")) * self._lin(h, p + "ffn_up"), p + "ffn_down")
            x = x + f
        x = self._norm(x, "output_norm")
        return x @ self.lm_head().t()

    def loss_sum(self, tokens: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        lg = self.forward(tokens)
        V = lg.shape[-1]
        t = targets.reshape(-1)
        if int(t.max()) >= V or int(t.min()) < -1:
            die("target out of range")
        ls = F.cross_entropy(lg.reshape(-1, V), t, ignore_index=-1, reduction="sum")
        return ls, int((t >= 0).sum())

    # -- trainable tensors from a file --
    def attach_trainable(self, init: dict, alpha: Optional[float], rank: Optional[int]) -> list:
        """init: name -> float32 array. Returns [(name, leaf tensor, file shape)] in file order."""
        out = []
        pairs = {}
        for name, a in init.items():
            leaf = torch.tensor(np.asarray(a, dtype=np.float64), dtype=self.dtype)
            if name.endswith(".lora_a") or name.endswith(".lora_b"):
                pairs.setdefault(name[:-7], {})[name[-1]] = None
                if leaf.dim() != 2:
                    die(f"{name}: LoRA factors must be 2-D in the file")
                leaf.requires_grad_(True)
                pairs[name[:-7]][name[-1]] = leaf
            else:
                if name not in self.base:
                    die(f"trainable tensor {name!r} is not a tensor of the model")
                if leaf.numel() != self.base[name].numel():
                    die(f"{name}: {leaf.numel()} values, the model's tensor has {self.base[name].numel()}")
                leaf = leaf.reshape(self.base[name].shape).clone().requires_grad_(True)
                self.params[name] = leaf
            out.append((name, leaf, tuple(a.shape)))
        for wname, ab in pairs.items():
            if ab.get("a") is None or ab.get("b") is None:
                die(f"{wname}: lora_a and lora_b must come in pairs")
            r = ab["a"].shape[0]
            if rank is not None and r != rank:
                die(f"{wname}.lora_a has rank {r}, expected {rank}")
            if alpha is None:
                die("--alpha is required with LoRA factors")
            self.add_lora(wname, ab["a"], ab["b"], float(alpha) / r)
        return out

    def decays(self, name: str, leaf: torch.Tensor) -> bool:
        """PyTorch/HF convention of this project: weight decay for 2-D tensors only."""
        return leaf.dim() == 2


# --------------------------------------------------------------------------------------
# PEFT adapters
# --------------------------------------------------------------------------------------

def peft_module_to_name(mod: str, gpt2: bool) -> str:
    """PEFT module path (after base_model.model.) -> llama.cpp weight name."""
    if mod in ("lm_head",):
        return "output.weight"
    if gpt2:
        m = re.fullmatch(r"(?:transformer\.)?h\.(\d+)\.((?:attn|mlp)\.c_\w+)", mod)
        if m and m.group(2) in HF_GPT2_LINEAR:
            return f"blk.{m.group(1)}.{HF_GPT2_LINEAR[m.group(2)]}.weight"
    else:
        m = re.fullmatch(r"(?:model\.)?layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)", mod)
        if m and m.group(2) in HF_LLAMA_LINEAR:
            return f"blk.{m.group(1)}.{HF_LLAMA_LINEAR[m.group(2)]}.weight"
    die(f"PEFT module {mod!r} is not a supported LoRA target")
    return ""


def _pattern_value(pattern: dict, mod: str, default):
    for key, val in (pattern or {}).items():
        if re.match(rf"(.*\.)?{key}$", mod):
            return val
    return default


def _targets_match(targets, mod: str) -> bool:
    if targets is None:
        return True
    if isinstance(targets, str):
        if targets == "all-linear":
            return True
        return re.fullmatch(targets, mod) is not None
    return any(mod == t or mod.endswith("." + t) for t in targets)


def load_peft(model: TrainModel, folder: str, user_scale: float = 1.0) -> list:
    """Attaches a PEFT LoRA adapter's factors (frozen) to model.lora. Returns [(name, r, scale)]."""
    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("peft_type", "LORA") != "LORA":
        die(f"{folder}: peft_type {cfg.get('peft_type')!r} is not LORA")
    if cfg.get("use_dora"):
        die(f"{folder}: DoRA adapters are not supported")
    path = os.path.join(folder, "adapter_model.safetensors")
    if not os.path.isfile(path):
        die(f"{folder}: no adapter_model.safetensors")
    tens, _ = read_st(path)
    fan = bool(cfg.get("fan_in_fan_out", False))
    if fan and not model.gpt2:
        warn("fan_in_fan_out is true for a model without Conv1D layers")
    if model.gpt2 and not fan:
        warn("GPT-2 adapter without fan_in_fan_out (PEFT sets it for Conv1D)")
    mods = {}
    for name, a in tens.items():
        m = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[\w-]+)?\.weight", name)
        if not m:
            if "lora_embedding" in name or "magnitude" in name:
                die(f"{folder}: unsupported adapter tensor {name!r}")
            warn(f"{folder}: ignoring tensor {name!r}")
            continue
        mods.setdefault(m.group(1), {})[m.group(2)] = a
    done = []
    r_def = int(cfg.get("r", 8))
    alpha_def = float(cfg.get("lora_alpha", 8))
    for mod, ab in mods.items():
        if "A" not in ab or "B" not in ab:
            die(f"{folder}: {mod} lacks lora_A or lora_B")
        if not _targets_match(cfg.get("target_modules"), mod):
            warn(f"{folder}: {mod} is not matched by target_modules {cfg.get('target_modules')!r}")
        r = int(_pattern_value(cfg.get("rank_pattern"), mod, r_def))
        alpha = float(_pattern_value(cfg.get("alpha_pattern"), mod, alpha_def))
        A = torch.tensor(ab["A"], dtype=model.dtype)
        B = torch.tensor(ab["B"], dtype=model.dtype)
        if A.shape[0] != r:
            warn(f"{folder}: {mod}.lora_A has {A.shape[0]} rows, config r = {r}; using the tensor's")
            r = A.shape[0]
        scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        wname = peft_module_to_name(mod, model.gpt2)
        if wname == "output.weight" and model.tied:
            # PEFT wraps lm_head only: untie, the embedding stays as it is
            model.base["output.weight"] = model.base["token_embd.weight"].clone()
            model.tied = False
        model.add_lora(wname, A, B, scale * user_scale)
        done.append((wname, r, scale * user_scale))
    if not done:
        die(f"{folder}: the adapter has no LoRA factors")
    return done


def make_adapter(m: TrainModel, out: str, rank: int, alpha: float, targets: str, seed: int,
                 rslora: bool = False) -> None:
    """A random PEFT LoRA adapter folder (B nonzero, unlike PEFT's init, so that it matters):
    A ~ N(0, 1/sqrt(in)), B ~ N(0, 0.02)."""
    rng = np.random.default_rng(seed)
    stems = []
    for t in targets.split(","):
        t = t.strip()
        if t and t not in TARGET_NAMES:
            die(f"unknown target {t!r}")
        if t:
            stems.append(TARGET_NAMES[t])
    inv = {v: k for k, v in (HF_GPT2_LINEAR if m.gpt2 else HF_LLAMA_LINEAR).items()}
    tens = {}
    mods = []
    for i in range(m.cfg.n_layers):
        for s in stems:
            wn = f"blk.{i}.{s}.weight"
            if wn not in m.base or s not in inv:
                die(f"target {s} does not exist in this model")
            W = m.base[wn]
            if m.gpt2:
                mod = f"transformer.h.{i}.{inv[s]}"
            else:
                mod = f"model.layers.{i}.{'self_attn' if s.startswith('attn') else 'mlp'}.{inv[s]}"
            short = inv[s].split(".")[-1]
            # GPT-2's "c_proj" names attn.c_proj and mlp.c_proj alike (PEFT matches name suffixes)
            both_proj = {"attn_output", "ffn_down"} <= set(stems)
            mods.append(inv[s] if m.gpt2 and short == "c_proj" and not both_proj else short)
            A = rng.standard_normal((rank, W.shape[1])).astype(np.float32) / math.sqrt(W.shape[1])
            B = (0.02 * rng.standard_normal((W.shape[0], rank))).astype(np.float32)
            tens[f"base_model.model.{mod}.lora_A.weight"] = A
            tens[f"base_model.model.{mod}.lora_B.weight"] = B
    os.makedirs(out, exist_ok=True)
    cfg = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": os.path.abspath(m.folder),
           "bias": "none", "fan_in_fan_out": m.gpt2, "inference_mode": True, "init_lora_weights": True,
           "layers_pattern": None, "layers_to_transform": None, "lora_alpha": alpha, "lora_dropout": 0.0,
           "modules_to_save": None, "peft_type": "LORA", "r": rank, "rank_pattern": {}, "revision": None,
           "target_modules": sorted(set(mods)), "task_type": "CAUSAL_LM", "use_dora": False,
           "use_rslora": rslora}
    with open(os.path.join(out, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    write_st(os.path.join(out, "adapter_model.safetensors"), {n: tens[n] for n in sorted(tens)}, {"format": "pt"})


def parse_adapter(spec: str) -> tuple[str, float]:
    if ":" in spec and not os.path.isdir(spec):
        d, s = spec.rsplit(":", 1)
        try:
            return d, float(s)
        except ValueError:
            pass
    return spec, 1.0


# --------------------------------------------------------------------------------------
# schedules and the optimizer
# --------------------------------------------------------------------------------------

def lr_at(kind: str, lr: float, min_lr: float, warmup: int, total: int, step: int) -> float:
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if kind == "constant":
        return lr
    prog = (step - warmup) / max(1, total - warmup)
    prog = min(max(prog, 0.0), 1.0)
    if kind == "linear":
        return min_lr + (lr - min_lr) * (1.0 - prog)
    if kind == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * prog))
    die(f"schedule {kind!r}")
    return 0.0


def make_adamw(named: list, a, decays) -> torch.optim.AdamW:
    dec = [t for n, t, _ in named if decays(n, t)]
    nodec = [t for n, t, _ in named if not decays(n, t)]
    groups = []
    if dec:
        groups.append({"params": dec, "weight_decay": a.weight_decay})
    if nodec:
        groups.append({"params": nodec, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=a.weight_decay)


def opt_step(opt, named, a, step: int) -> tuple[float, float]:
    """clip (if --clip > 0) and one AdamW step at the schedule's lr. Returns (lr, norm before clip)."""
    params = [t for _, t, _ in named]
    for t in params:
        if t.grad is None:
            t.grad = torch.zeros_like(t)
    if a.clip > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(params, a.clip))
    else:
        norm = float(torch.sqrt(sum((t.grad.double() ** 2).sum() for t in params)))
    lr = lr_at(a.schedule, a.lr, a.min_lr, a.warmup, a.total_steps or a.steps, step)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    return lr, norm


def final_tensors(named, opt=None, moments=False) -> dict:
    out = {}
    for n, t, shape in named:
        out[n] = t.detach().reshape(shape)
    if moments and opt is not None:
        for n, t, shape in named:
            stt = opt.state.get(t, {})
            if "exp_avg" in stt:
                out[n + ".adam_m"] = stt["exp_avg"].reshape(shape)
                out[n + ".adam_v"] = stt["exp_avg_sq"].reshape(shape)
    return out


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

def load_batch(path: str, loss_scale: Optional[float]) -> tuple[torch.Tensor, torch.Tensor, float]:
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    toks = torch.tensor(j["tokens"], dtype=torch.long)
    tg = torch.tensor(j["targets"], dtype=torch.long)
    if toks.dim() != 2 or toks.shape != tg.shape:
        die("batch: tokens and targets must be [n_seq, seq_len] of the same shape")
    ls = float(j.get("loss_scale", 1.0)) if loss_scale is None else loss_scale
    return toks, tg, ls


def check_targets(model: TrainModel, names: list, spec: Optional[str], full: bool) -> None:
    got = set(names)
    if full:
        want = set(model.base)
        if got != want:
            die(f"trainable set differs from the model's tensors: missing {sorted(want - got)[:8]}, "
                f"extra {sorted(got - want)[:8]}")
        return
    if spec is None:
        return
    stems = set()
    for t in spec.split(","):
        t = t.strip()
        if t == "":
            continue
        if t not in TARGET_NAMES:
            die(f"unknown target {t!r}")
        stems.add(TARGET_NAMES[t])
    want = set()
    for i in range(model.cfg.n_layers):
        for s in stems:
            wn = f"blk.{i}.{s}.weight"
            if wn not in model.base:
                die(f"target {s} does not exist in this model")
            want |= {wn + ".lora_a", wn + ".lora_b"}
    if got != want:
        die(f"LoRA tensors differ from the targets: missing {sorted(want - got)[:8]}, extra {sorted(got - want)[:8]}")


def add_common(p, model=True):
    if model:
        p.add_argument("--model", required=True)
        p.add_argument("--rope-layout", choices=("neox", "interleaved"), default="neox")
        p.add_argument("--base-gguf", help="frozen tensor values from this GGUF (dequantized), config from --model")
        p.add_argument("--base-gguf-linear-only", action="store_true",
                       help="take only the blocks' weight matrices from --base-gguf (QLoRA)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")


def add_opt(p):
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("constant", "linear", "cosine"), default="constant")
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=0, help="default: --steps / number of gradient files")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=0.0)
    p.add_argument("--moments", action="store_true", help="also write NAME.adam_m / NAME.adam_v")


def add_train(p):
    p.add_argument("--init", required=True)
    p.add_argument("--alpha", type=float, help="LoRA alpha (scale = alpha / rank)")
    p.add_argument("--rank", type=int, help="expected LoRA rank (checked)")
    p.add_argument("--expect-targets", help="check that the LoRA factors are exactly these targets in every layer")
    p.add_argument("--expect-full", action="store_true", help="check that every model tensor is trainable")
    p.add_argument("--dropout-masks", help="safetensors of 'W.dropout_mask' [n_tokens, in]: LoRA dropout on W's "
                   "input as mask * x (0 dropped, 1/(1-p) kept) instead of random draws")


def fmt(x: float) -> str:
    return f"{x:.17g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("logits", help="logits with PEFT adapters applied")
    add_common(p)
    p.add_argument("--adapter", action="append", default=[], help="PEFT folder, optionally DIR:SCALE")
    p.add_argument("--ids", "--tokens", dest="ids", required=True)
    p.add_argument("--out", help="save float32 [n, vocab] .npy instead of printing")

    p = sub.add_parser("merge", help="HF folder with the adapters merged into the weights")
    add_common(p)
    p.add_argument("--adapter", action="append", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("make-adapter", help="write a random PEFT LoRA adapter folder")
    add_common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--alpha", type=float, default=8.0)
    p.add_argument("--targets", default="q,v")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rslora", action="store_true")

    p = sub.add_parser("grads", help="loss and gradients of the trainable tensors on one batch")
    add_common(p)
    add_train(p)
    p.add_argument("--batch", required=True)
    p.add_argument("--loss-scale", type=float)
    p.add_argument("--logits-out", help="also write the logits [n_seq*seq_len, vocab] as tensor 'logits'")
    p.add_argument("--out", required=True)

    p = sub.add_parser("adamw", help="AdamW on given gradients")
    p.add_argument("--init", required=True)
    p.add_argument("--grads", action="append", required=True)
    p.add_argument("--out", required=True)
    add_common(p, model=False)
    add_opt(p)

    p = sub.add_parser("train", help="end-to-end steps on a fixed batch")
    add_common(p)
    add_train(p)
    add_opt(p)
    p.add_argument("--batch", required=True)
    p.add_argument("--loss-scale", type=float)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("lr", help="print the schedule")
    add_opt(p)
    p.set_defaults(schedule="constant", warmup="0")
    for act in p._actions:           # lists here: --schedule linear,cosine --warmup 0,4
        if act.dest in ("schedule", "warmup"):
            act.choices, act.type = None, str
    p.add_argument("--steps", type=int, required=True)

    a = ap.parse_args(argv)
    torch.manual_seed(0)
    if a.cmd == "lr":
        kinds, warms = a.schedule.split(","), [int(w) for w in str(a.warmup).split(",")]
        for k in kinds:
            if k not in ("constant", "linear", "cosine"):
                die(f"schedule {k!r}")
            for w in warms:
                key = "lr" if len(kinds) == 1 and len(warms) == 1 else f"lr-{k}-{w}"
                for s in range(a.steps):
                    print(f"{key} {s} {fmt(lr_at(k, a.lr, a.min_lr, w, a.total_steps or a.steps, s))}")
        return 0
    dtype = torch.float64 if a.dtype == "float64" else torch.float32

    if a.cmd == "make-adapter":
        make_adapter(TrainModel(a.model, dtype, "neox"), a.out, a.rank, a.alpha, a.targets, a.seed, a.rslora)
        print(a.out)
        return 0
    if a.cmd in ("logits", "merge"):
        m = TrainModel(a.model, dtype, a.rope_layout)
        if a.base_gguf:
            m.use_gguf_base(a.base_gguf, a.base_gguf_linear_only)
        for spec in a.adapter:
            d, s = parse_adapter(spec)
            load_peft(m, d, s)
        if a.cmd == "logits":
            ids = tr.parse_ids(a.ids)
            with torch.no_grad():
                lg = m.forward(torch.tensor([ids], dtype=torch.long))[0].to(torch.float32).numpy()
            if a.out:
                np.save(a.out, lg)
            else:
                for row in lg:
                    print(tr.fmt_row(row))
            return 0
        return merge(m, a.out)

    if a.cmd == "adamw":
        init, _ = read_st(a.init)
        named = [(n, torch.tensor(v.astype(np.float64), dtype=dtype).requires_grad_(True), v.shape)
                 for n, v in init.items()]
        a.steps = len(a.grads)
        opt = make_adamw(named, a, lambda n, t: t.dim() == 2)
        for s, gp in enumerate(a.grads):
            g, _ = read_st(gp)
            for n, t, shape in named:
                if n not in g:
                    die(f"{gp}: no gradient for {n}")
                if g[n].size != t.numel():
                    die(f"{gp}: gradient of {n} has {g[n].size} values, the tensor {t.numel()}")
                t.grad = torch.tensor(g[n].astype(np.float64), dtype=dtype).reshape(t.shape)
            lr, norm = opt_step(opt, named, a, s)
            print(f"lr {s} {fmt(lr)}")
            print(f"norm {s} {fmt(norm)}")
        write_st(a.out, final_tensors(named, opt, a.moments), {"steps": len(a.grads)})
        return 0

    # grads / train
    m = TrainModel(a.model, dtype, a.rope_layout)
    if a.base_gguf:
        m.use_gguf_base(a.base_gguf, a.base_gguf_linear_only)
    init, _ = read_st(a.init)
    named = m.attach_trainable(init, a.alpha, a.rank)
    if a.dropout_masks:
        masks, _ = read_st(a.dropout_masks)
        for k, v in masks.items():
            if not k.endswith(".dropout_mask") or k[:-len(".dropout_mask")] not in m.lora:
                die(f"{a.dropout_masks}: {k!r} is not the dropout mask of a LoRA-adapted weight")
            m.drop_masks[k[:-len(".dropout_mask")]] = torch.tensor(v.astype(np.float64), dtype=dtype)
    check_targets(m, [n for n, _, _ in named], a.expect_targets, a.expect_full)
    toks, tg, ls = load_batch(a.batch, a.loss_scale)
    if a.cmd == "grads":
        if a.logits_out:
            with torch.no_grad():
                lg = m.forward(toks)
            write_st(a.logits_out, {"logits": lg.reshape(-1, lg.shape[-1])})
        loss, cnt = m.loss_sum(toks, tg)
        (loss * ls).backward()
        out = {}
        for n, t, shape in named:
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            out[n] = g.reshape(shape)
        write_st(a.out, out, {"loss_sum": fmt(float(loss)), "n_counted": cnt, "loss_scale": fmt(ls)})
        print(f"loss_sum {fmt(float(loss))}")
        print(f"n_counted {cnt}")
        return 0

    opt = make_adamw(named, a, m.decays)
    losses = []
    for s in range(a.steps):
        opt.zero_grad(set_to_none=True)
        loss, cnt = m.loss_sum(toks, tg)
        (loss * ls).backward()
        lr, norm = opt_step(opt, named, a, s)
        losses.append(float(loss))
        print(f"loss {s} {fmt(float(loss))}")
        print(f"lr {s} {fmt(lr)}")
        print(f"norm {s} {fmt(norm)}")
    with torch.no_grad():
        loss, cnt = m.loss_sum(toks, tg)
    print(f"loss {a.steps} {fmt(float(loss))}")
    write_st(a.out, final_tensors(named, opt, a.moments),
             {"losses": ",".join(fmt(x) for x in losses + [float(loss)]), "steps": a.steps})
    return 0


# --------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------

def merge(m: TrainModel, out: str) -> int:
    """Copies the folder's non-weight files and writes model.safetensors (F32) with the deltas merged."""
    if m.rope_layout == "interleaved":
        die("merge writes Hugging Face rows; use --rope-layout neox")
    src = m.folder
    os.makedirs(out, exist_ok=True)
    for fn in os.listdir(src):
        full = os.path.join(src, fn)
        if os.path.isfile(full) and not fn.endswith(".safetensors") and fn != "model.safetensors.index.json":
            shutil.copy2(full, os.path.join(out, fn))
    st = SafetensorsFolder(src)
    tens = {n: np.array(st.tensor_array(n), dtype=np.float64) for n in st.names()}
    st.close()
    with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    names = set(tens)

    def find(stem):
        for pre in ("", "model.", "transformer."):
            if pre + stem in names:
                return pre + stem
        die(f"merge: no tensor {stem!r} in {src}")
        return ""

    with torch.no_grad():
        for wname in m.lora:
            d = m.delta(wname).to(torch.float64).numpy()
            if wname == "output.weight":
                if "lm_head.weight" in names:
                    tens["lm_head.weight"] = tens["lm_head.weight"] + d
                else:
                    emb = find("embed_tokens.weight") if not m.gpt2 else find("wte.weight")
                    tens["lm_head.weight"] = tens[emb] + d
                    cfg["tie_word_embeddings"] = False
                    if m.gpt2:
                        die("merge: lm_head LoRA on GPT-2 (always tied) cannot be merged")
                continue
            mm = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", wname)
            i, stem = mm.group(1), mm.group(2)
            if m.gpt2:
                hf = {v: k for k, v in HF_GPT2_LINEAR.items()}[stem]
                key = find(f"h.{i}.{hf}.weight")
                tens[key] = tens[key] + d.T          # Conv1D [in, out]
            else:
                hf = {v: k for k, v in HF_LLAMA_LINEAR.items()}[stem]
                sect = "self_attn" if stem.startswith("attn") else "mlp"
                key = find(f"layers.{i}.{sect}.{hf}.weight")
                tens[key] = tens[key] + d
    cfg["torch_dtype"] = "float32"
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    write_st(os.path.join(out, "model.safetensors"), {n: tens[n] for n in sorted(tens)}, {"format": "pt"})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
