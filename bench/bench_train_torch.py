#!/usr/bin/python3
"""The PyTorch side of the fine-tuning speed benchmark (bench/run_train_bench.sh).

A minimal Llama-architecture module written from the published architecture
(RMSNorm, rotary embeddings with rotate-half, grouped-query attention with a
causal mask, SwiGLU MLP, tied or separate output projection), LoRA as a small
wrapper around the q and v projections (A, B, scale alpha/r, base frozen),
AdamW, and the loop bench_train.c runs: zero_grad, forward, backward of
batch x seq random tokens (mean cross-entropy over every position),
clip_grad_norm_(1.0), AdamW step (lr 1e-4, no weight decay). Prints one JSON
object with tokens/s and peak RSS.

    /usr/bin/python3 bench/bench_train_torch.py MODEL.gguf [--method lora|full] [--batch 4] [--seq 256]
                                                [--warmup 2] [--steps 4] [--threads 2] [--random-init]

Weights come from the same GGUF file bench_train reads (F32 or F16; q/k rows
un-permuted from llama.cpp's adjacent-pair RoPE layout back to the Hugging Face
order), so both sides print the same losses; --random-init skips the file
(only its shape is read) -- the speed does not depend on the values.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--method", choices=["lora", "full"], default="lora")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--random-init", action="store_true")
    return ap.parse_args()


ARGS = parse_args()
# The BLAS (Debian's libopenblas0-pthread behind libblas.so.3) and OpenMP read these at load time.
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(ARGS.threads))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ---- a small GGUF reader (header, metadata, tensor table; data read on demand) ----------------

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Gguf:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._f = f
            if f.read(4) != b"GGUF":
                raise SystemExit(f"{path}: not a GGUF file")
            version, n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                raise SystemExit(f"{path}: GGUF version {version} is not supported")
            self.kv = {}
            for _ in range(n_kv):
                key = self._str()
                (vt,) = struct.unpack("<I", f.read(4))
                self.kv[key] = self._value(vt)
            self.tensors = {}
            for _ in range(n_tensors):
                name = self._str()
                (nd,) = struct.unpack("<I", f.read(4))
                ne = struct.unpack(f"<{nd}Q", f.read(8 * nd))
                ttype, off = struct.unpack("<IQ", f.read(12))
                self.tensors[name] = (ne, ttype, off)
            align = int(self.kv.get("general.alignment", 32))
            pos = f.tell()
            self.data_start = (pos + align - 1) // align * align
        del self._f

    def _str(self):
        (n,) = struct.unpack("<Q", self._f.read(8))
        return self._f.read(n).decode("utf-8")

    def _value(self, vt):
        if vt == 8:
            return self._str()
        if vt == 9:
            et, n = struct.unpack("<IQ", self._f.read(12))
            return [self._value(et) for _ in range(n)]
        fmt = _SCALAR[vt]
        return struct.unpack(fmt, self._f.read(struct.calcsize(fmt)))[0]

    def read(self, name, f):
        """Tensor `name` as a float32 torch tensor of shape (rows, cols), read straight into its
        storage (no mapping of the file, so the page cache does not count in our RSS)."""
        ne, ttype, off = self.tensors[name]
        shape = tuple(reversed(ne)) if len(ne) > 1 else (int(ne[0]),)
        n = 1
        for d in ne:
            n *= int(d)
        f.seek(self.data_start + off)
        if ttype == 0:  # F32
            out = torch.empty(shape, dtype=torch.float32)
            f.readinto(memoryview(out.numpy()).cast("B"))
            return out
        if ttype == 1:  # F16
            h = np.empty(n, dtype=np.float16)
            f.readinto(memoryview(h).cast("B"))
            return torch.from_numpy(h.astype(np.float32)).reshape(shape)
        raise SystemExit(f"{name}: GGUF type {ttype} not supported here (use F32 or F16)")


# ---- the model ------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / r) * B(A(x)); A as PEFT initialises it, B zero; base frozen."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scale


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv, self.hd = c["heads"], c["kv_heads"], c["hidden"] // c["heads"]
        d = c["hidden"]
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, T, _ = x.shape
        q = self.q_proj(x).view(b, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd) + mask
        o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, T, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c["hidden"], c["ffn"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["ffn"], bias=False)
        self.down_proj = nn.Linear(c["ffn"], c["hidden"], bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"], c["eps"])
        self.lm_head = None if c["tied"] else nn.Linear(c["hidden"], c["vocab"], bias=False)
        hd = c["hidden"] // c["heads"]
        self.inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))

    def forward(self, tokens):
        b, T = tokens.shape
        ang = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos(), ang.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed_tokens(tokens)
        for blk in self.layers:
            x = blk(x, cos, sin, mask)
        x = self.norm(x)
        w = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return x @ w.t()


def config_of(g):
    kv = g.kv
    a = kv["general.architecture"]
    d = int(kv[f"{a}.embedding_length"])
    return {
        "hidden": d,
        "layers": int(kv[f"{a}.block_count"]),
        "heads": int(kv[f"{a}.attention.head_count"]),
        "kv_heads": int(kv.get(f"{a}.attention.head_count_kv", kv[f"{a}.attention.head_count"])),
        "ffn": int(kv[f"{a}.feed_forward_length"]),
        "vocab": int(g.tensors["token_embd.weight"][0][1]),
        "eps": float(kv.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(kv.get(f"{a}.rope.freq_base", 10000.0)),
        "tied": "output.weight" not in g.tensors,
    }


def unpermute(w, n_head):
    """llama.cpp stores q/k rows of a head as interleaved pairs (adjacent-pair RoPE); back to halves."""
    rows, cols = w.shape
    hd = rows // n_head
    return w.view(n_head, hd // 2, 2, cols).transpose(1, 2).reshape(rows, cols).contiguous()


@torch.no_grad()
def load_weights(model, g, c):
    names = {"token_embd.weight": model.embed_tokens.weight, "output_norm.weight": model.norm.weight}
    if model.lm_head is not None:
        names["output.weight"] = model.lm_head.weight
    for i, blk in enumerate(model.layers):
        p = f"blk.{i}."
        names.update({
            p + "attn_norm.weight": blk.input_layernorm.weight,
            p + "attn_q.weight": blk.self_attn.q_proj.weight,
            p + "attn_k.weight": blk.self_attn.k_proj.weight,
            p + "attn_v.weight": blk.self_attn.v_proj.weight,
            p + "attn_output.weight": blk.self_attn.o_proj.weight,
            p + "ffn_norm.weight": blk.post_attention_layernorm.weight,
            p + "ffn_gate.weight": blk.mlp.gate_proj.weight,
            p + "ffn_up.weight": blk.mlp.up_proj.weight,
            p + "ffn_down.weight": blk.mlp.down_proj.weight,
        })
    with open(g.path, "rb") as f:
        for name, dst in names.items():
            w = g.read(name, f)
            if name.endswith("attn_q.weight"):
                w = unpermute(w, c["heads"])
            elif name.endswith("attn_k.weight"):
                w = unpermute(w, c["kv_heads"])
            dst.copy_(w.reshape(dst.shape))
            del w


def make_batch(state, vocab, b, T):
    """The LCG stream bench_train.c uses: per row seq + 1 tokens; inputs first seq, targets last seq."""
    mask = (1 << 64) - 1
    rows = []
    s = state[0]
    for _ in range(b):
        row = []
        for _ in range(T + 1):
            s = (s * 6364136223846793005 + 1442695040888963407) & mask
            row.append((s >> 33) % vocab)
        rows.append(row)
    state[0] = s
    t = torch.tensor(rows, dtype=torch.long)
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def blas_libs():
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in p or "lapack" in p:
                libs.add(os.path.realpath(p))
    return sorted(libs)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    a = ARGS
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    g = Gguf(a.model)
    c = config_of(g)
    model = Llama(c)
    if not a.random_init:
        load_weights(model, g, c)
    if a.method == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        for blk in model.layers:
            blk.self_attn.q_proj = LoRALinear(blk.self_attn.q_proj, a.rank, a.alpha)
            blk.self_attn.v_proj = LoRALinear(blk.self_attn.v_proj, a.rank, a.alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    model.train()
    setup_s = time.perf_counter() - t0

    state = [a.seed]
    n = a.batch * a.seq
    dts, losses, fb_sum, opt_sum = [], [], 0.0, 0.0
    for s in range(a.warmup + a.steps):
        tok, tgt = make_batch(state, c["vocab"], a.batch, a.seq)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(tok)
        loss = F.cross_entropy(logits.view(n, -1), tgt.view(n))
        loss.backward()
        del logits
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        t3 = time.perf_counter()
        dts.append(t3 - t1)
        losses.append(loss.item())
        if s >= a.warmup:
            fb_sum += t2 - t1
            opt_sum += t3 - t2
        tag = " (warm-up)" if s < a.warmup else ""
        print(f"bench_train_torch {a.method}: step {s + 1}{tag} loss {losses[-1]:.5f}  {dts[-1]:.2f} s "
              f"(forward+backward {t2 - t1:.2f} s)", file=sys.stderr, flush=True)
    with torch.no_grad():
        e0 = time.perf_counter()
        F.cross_entropy(model(tok).view(n, -1), tgt.view(n))
        fwd_s = time.perf_counter() - e0

    meas = dts[a.warmup:]
    srt = sorted(meas)
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "method": a.method, "model": a.model,
        "threads": torch.get_num_threads(), "batch": a.batch, "seq": a.seq, "warmup": a.warmup, "steps": a.steps,
        "trainable": sum(p.numel() for p in params),
        "tokens_per_s": round(n * a.steps / sum(meas), 2),
        "step_s_median": round(srt[len(srt) // 2], 3), "step_s_min": round(srt[0], 3),
        "fwd_bwd_s_mean": round(fb_sum / a.steps, 3), "clip_adamw_s_mean": round(opt_sum / a.steps, 3),
        "forward_only_s": round(fwd_s, 3),
        "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
        "setup_s": round(setup_s, 2), "blas": blas_libs(), "peak_rss_mib": round(peak_rss_mib(), 1),
    }))


if __name__ == "__main__":
    main()
