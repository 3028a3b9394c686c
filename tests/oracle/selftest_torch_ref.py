#!/usr/bin/python3
"""Sanity checks of torch_ref.py that need no C code.

    selftest_torch_ref.py [-v]

(a) KV-cache decoding equals full recompute (every causal arch, incl. a sliding window)
(b) llama.cpp's q/k row permutation + interleaved RoPE == rotate-half on the HF rows
    (and, the other way round, llama2.c's interleaved rows un-permuted + rotate-half)
(c) GPT-2 on shared/assets/hf/tiny-random-gpt2: finite logits [n, 1000]; agrees with a
    float64 numpy transcription that uses the Conv1D weights as stored (x @ W + b)
(d) stories260K greedy from BOS: readable story (decoded with tok512.bin); also agrees
    with a float64 numpy transcription of llama2.c run.c, and run.c's RoPE frequencies
    equal the freq_cis tables stored in the checkpoint
(e) BERT: mean vs CLS pooling differ, unit norm, padding does not change the result
plus: llama3 rope scaling is applied and matters, f16/bf16 folders load and stay close
to f32, the safetensors writer's files are valid, tokenizer.json vocabularies are
consistent, and the CLI prints what the library computes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_random_model as mrm  # noqa: E402
import torch_ref as tr  # noqa: E402
from modelfile import SafetensorsFile, SafetensorsFolder  # noqa: E402

ASSETS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "assets"))
if not os.path.isdir(ASSETS):
    ASSETS = "/work/shared/assets"
GPT2_DIR = os.path.join(ASSETS, "hf", "tiny-random-gpt2")
STORIES = os.path.join(ASSETS, "llm", "stories260K", "stories260K.bin")
TOK512 = os.path.join(ASSETS, "llm", "stories260K", "tok512.bin")

VERBOSE = "-v" in sys.argv
N_PASS = 0
N_FAIL = 0


def check(cond: bool, msg: str) -> bool:
    global N_PASS, N_FAIL
    if cond:
        N_PASS += 1
        if VERBOSE:
            print(f"  ok   {msg}")
    else:
        N_FAIL += 1
        print(f"  FAIL {msg}")
    return cond


def maxdiff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def section(name):
    print(f"[{name}]")


TOKS = [1, 5, 9, 33, 77, 2, 200, 17, 64, 3, 150, 99, 42, 8, 250, 11, 70, 90, 120, 7]


# --------------------------------------------------------------------------------------
# (a) KV cache == full recompute
# --------------------------------------------------------------------------------------

def incremental_logits(m: tr.CausalLM, toks, first_chunk=7):
    cache = m.new_cache()
    out = [m.forward(toks[:first_chunk], cache)]
    for t in toks[first_chunk:]:
        out.append(m.forward([t], cache))
    return torch.cat(out).numpy()


def test_kv_cache(models: dict):
    section("a: KV cache == full recompute")
    for name, m in models.items():
        toks = [t % m.cfg.vocab_size for t in TOKS]
        full = m.logits(toks)
        inc = incremental_logits(m, toks)
        d = maxdiff(full, inc)
        check(full.shape == (len(toks), m.cfg.vocab_size), f"{name}: logits shape {full.shape}")
        check(np.isfinite(full).all(), f"{name}: finite logits")
        check(d < 1e-4, f"{name}: incremental vs full max |diff| = {d:.2e}")
        g1 = m.generate(toks[:3], 16, use_cache=True)
        g2 = m.generate(toks[:3], 16, use_cache=False)
        check(g1 == g2, f"{name}: greedy with cache == without ({g1[:8]}...)")


def test_sliding_window(tmp):
    section("a': sliding window (mistral, window 5)")
    d = mrm.make("mistral", os.path.join(tmp, "mistral_w5"), seed=3, window=5)
    m = tr.load(d)
    check(m.cfg.windows == [5] * m.cfg.n_layers, "sliding_window read from config.json")
    toks = TOKS[:16]
    lw = m.logits(toks)
    m2 = tr.load(d)
    m2.cfg.windows = [None] * m2.cfg.n_layers
    lf = m2.logits(toks)
    check(maxdiff(lw[:5], lf[:5]) < 1e-6, "positions 0..4 (window not yet full) equal the unwindowed model")
    check(maxdiff(lw[5:], lf[5:]) > 1e-4, "positions >= 5 differ from the unwindowed model")
    inc = incremental_logits(m, toks, first_chunk=3)
    check(maxdiff(lw, inc) < 1e-4, f"windowed incremental vs full max |diff| = {maxdiff(lw, inc):.2e}")


# --------------------------------------------------------------------------------------
# (b) RoPE layouts
# --------------------------------------------------------------------------------------

def permuted_copy(m: tr.CausalLM, to_layout: str) -> tr.CausalLM:
    cfg = copy.deepcopy(m.cfg)
    w = dict(m.w)
    fn = tr.permute_rows_for_interleaved if to_layout == "interleaved" else tr.unpermute_rows_from_interleaved
    for i in range(cfg.n_layers):
        for nm, nh in (("q", cfg.n_heads), ("k", cfg.n_kv_heads)):
            w[f"l{i}.w{nm}"] = fn(w[f"l{i}.w{nm}"], nh)
            if f"l{i}.b{nm}" in w:
                w[f"l{i}.b{nm}"] = fn(w[f"l{i}.b{nm}"], nh)
    cfg.rope_layout = to_layout
    return tr.CausalLM(cfg, w)


def test_rope_layouts(models: dict):
    section("b: llama.cpp permutation + interleaved RoPE == rotate-half")
    w = torch.arange(4 * 8 * 3, dtype=torch.float32).reshape(32, 3)
    p = tr.permute_rows_for_interleaved(w, 4)
    check(torch.equal(tr.unpermute_rows_from_interleaved(p, 4), w), "unpermute(permute(w)) == w")
    # head 0 (rows 0..7, d=8): new row 2i+j = old row j*4+i -> 0,4,1,5,2,6,3,7
    check(p[:8, 0].tolist() == [0, 12, 3, 15, 6, 18, 9, 21], "permute puts rows (i, i+d/2) side by side")
    for name in ("llama", "llama3", "qwen2"):
        m = models[name]
        toks = [t % m.cfg.vocab_size for t in TOKS]
        ref = m.logits(toks)
        mi = permuted_copy(m, "interleaved")
        d = maxdiff(ref, mi.logits(toks))
        check(d < 1e-5, f"{name}: permuted q/k + interleaved == HF rotate-half, max |diff| = {d:.2e}")
        bad = copy.deepcopy(m.cfg)
        bad.rope_layout = "interleaved"
        dbad = maxdiff(ref, tr.CausalLM(bad, m.w).logits(toks))
        check(dbad > 1e-3, f"{name}: interleaved RoPE on unpermuted HF rows differs ({dbad:.2e}), so layout matters")
    m = models["stories260K"]
    toks = TOKS[:12]
    ref = m.logits(toks)
    d = maxdiff(ref, permuted_copy(m, "half").logits(toks))
    check(d < 1e-5, f"stories260K: un-permuted q/k + rotate-half == llama2.c interleaved, max |diff| = {d:.2e}")


def test_llama3_rope(models: dict, tmp):
    section("llama3 rope scaling")
    m = models["llama3"]
    hd = m.cfg.head_dim
    base = 1.0 / (500000.0 ** (np.arange(0, hd, 2) / hd))
    inv = m.inv_freq.numpy().astype(np.float64)
    wl = 2 * math.pi / base
    lo_wl, hi_wl = 64 / 1.0, 64 / 4.0
    ok = True
    for i in range(hd // 2):
        if wl[i] < hi_wl:
            want = base[i]
        elif wl[i] > lo_wl:
            want = base[i] / 8
        else:
            sm = (64 / wl[i] - 1) / (4 - 1)
            want = (1 - sm) * base[i] / 8 + sm * base[i]
        ok &= abs(inv[i] - want) <= 1e-6 * want
    kinds = ["high" if x < hi_wl else "low" if x > lo_wl else "medium" for x in wl]
    check(ok, f"inv_freq follows the llama3 rule (bands {kinds})")
    check({"high", "medium", "low"} <= set(kinds), "the tiny model's head_dim exercises all three bands")
    unscaled = copy.deepcopy(m.cfg)
    unscaled.rope_scaling = None
    toks = [t % m.cfg.vocab_size for t in TOKS]
    a, b = m.logits(toks), tr.CausalLM(unscaled, m.w).logits(toks)
    check(maxdiff(a[:1], b[:1]) < 1e-6 and maxdiff(a[1:], b[1:]) > 1e-4,
          "scaling changes logits from position 1 on (position 0 has angle 0)")
    lin = copy.deepcopy(m.cfg)
    lin.rope_scaling = {"rope_type": "linear", "factor": 4.0}
    ml = tr.CausalLM(lin, m.w)
    ang_a = tr.rope_cos_sin(ml.inv_freq, torch.arange(8))[0]
    ang_b = tr.rope_cos_sin(tr.rope_inv_freq(hd, 500000.0, None, 256)[0], torch.arange(8).float() / 4.0)[0]
    check(maxdiff(ang_a, ang_b) < 1e-6, "linear scaling == positions divided by factor")
    # yarn (extra; not in the random folders): highest frequency kept, lowest divided by factor,
    # cos/sin scaled by 0.1 ln(factor) + 1
    inv, af = tr.rope_inv_freq(64, 10000.0, {"rope_type": "yarn", "factor": 4.0,
                                             "original_max_position_embeddings": 4096}, 16384)
    base = tr.rope_inv_freq(64, 10000.0, None, 16384)[0]
    check(abs(af - (0.1 * math.log(4.0) + 1)) < 1e-7 and float(inv[0]) == float(base[0])
          and abs(float(inv[-1]) - float(base[-1]) / 4) < 1e-12,
          f"yarn: extrapolated high band, interpolated low band, attention factor {af:.4f}")
    yarn = copy.deepcopy(m.cfg)
    yarn.rope_scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    my = tr.CausalLM(yarn, m.w)
    d = maxdiff(my.logits(toks), incremental_logits(my, toks))
    check(d < 1e-4, f"yarn: incremental vs full max |diff| = {d:.2e}")


# --------------------------------------------------------------------------------------
# (c) GPT-2
# --------------------------------------------------------------------------------------

def numpy_gpt2(folder, toks):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    st = SafetensorsFolder(folder)
    pre = "transformer." if "transformer.wte.weight" in st.names() else ""

    def g(n):
        return st.tensor_array(pre + n).astype(np.float64)

    D, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    hd = D // H
    eps = cfg["layer_norm_epsilon"]

    def ln(x, n):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g(n + ".weight") + g(n + ".bias")

    def gelu_new(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    n = len(toks)
    x = g("wte.weight")[toks] + g("wpe.weight")[np.arange(n)]
    for i in range(L):
        p = f"h.{i}."
        h = ln(x, p + "ln_1")
        qkv = h @ g(p + "attn.c_attn.weight") + g(p + "attn.c_attn.bias")   # Conv1D: x @ W + b
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        o = np.zeros((n, D))
        for hh in range(H):
            sl = slice(hh * hd, (hh + 1) * hd)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
            s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o[:, sl] = s @ v[:, sl]
        x = x + o @ g(p + "attn.c_proj.weight") + g(p + "attn.c_proj.bias")
        h = ln(x, p + "ln_2")
        x = x + gelu_new(h @ g(p + "mlp.c_fc.weight") + g(p + "mlp.c_fc.bias")) @ g(p + "mlp.c_proj.weight") \
            + g(p + "mlp.c_proj.bias")
    x = ln(x, "ln_f")
    out = x @ g("wte.weight").T
    st.close()
    return out


def test_gpt2(models):
    section("c: GPT-2 (tiny-random-gpt2 and a random gpt2 folder)")
    m = models["tiny-random-gpt2"]
    toks = [0, 5, 17, 98, 400, 999, 3, 42]
    lg = m.logits(toks)
    check(lg.shape == (len(toks), 1000), f"tiny-random-gpt2 logits shape {lg.shape}")
    check(bool(np.isfinite(lg).all()), "tiny-random-gpt2 logits finite")
    check(m.cfg.ffn == 128 and m.cfg.act == "gelu_new", "n_inner null -> 4*n_embd = 128; gelu_new")
    d = maxdiff(lg, numpy_gpt2(GPT2_DIR, toks))
    check(d < 1e-4, f"tiny-random-gpt2 vs float64 numpy Conv1D transcription: max |diff| = {d:.2e}")
    mg = models["gpt2"]
    toks = [t % mg.cfg.vocab_size for t in TOKS]
    d = maxdiff(mg.logits(toks), numpy_gpt2(mg.folder, toks))
    check(d < 1e-4, f"random gpt2 (no 'transformer.' prefix) vs numpy transcription: max |diff| = {d:.2e}")
    try:
        m.logits(list(range(1)) * 513)
        check(False, "positions beyond n_positions are refused")
    except ValueError:
        check(True, "positions beyond n_positions are refused")


# --------------------------------------------------------------------------------------
# (d) stories260K
# --------------------------------------------------------------------------------------

def numpy_runc(path, toks):
    """float64 transcription of llama2.c run.c forward(), one token at a time."""
    h, a = tr.read_llama2c(path)
    dim, L, H, KV = h["dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"]
    hs = dim // H
    kv_dim = KV * hs
    kv_mul = H // KV
    a = {k: v.astype(np.float64) for k, v in a.items()}
    wcls = a.get("wcls", a["tok"])
    kc = np.zeros((L, len(toks), kv_dim))
    vc = np.zeros((L, len(toks), kv_dim))

    def rms(x, w):
        return w * (x / np.sqrt((x * x).mean() + 1e-5))

    out = []
    for pos, tok in enumerate(toks):
        x = a["tok"][tok].copy()
        for l in range(L):
            xb = rms(x, a["rms_att"][l])
            q, k, v = a["wq"][l] @ xb, a["wk"][l] @ xb, a["wv"][l] @ xb
            for i in range(0, dim, 2):
                freq = 1.0 / 10000.0 ** ((i % hs) / hs)
                fcr, fci = math.cos(pos * freq), math.sin(pos * freq)
                for vec in ((q, k) if i < kv_dim else (q,)):
                    v0, v1 = vec[i], vec[i + 1]
                    vec[i] = v0 * fcr - v1 * fci
                    vec[i + 1] = v0 * fci + v1 * fcr
            kc[l, pos], vc[l, pos] = k, v
            xb = np.zeros(dim)
            for hh in range(H):
                qh = q[hh * hs:(hh + 1) * hs]
                ko = (hh // kv_mul) * hs
                att = kc[l, :pos + 1, ko:ko + hs] @ qh / math.sqrt(hs)
                att = np.exp(att - att.max())
                att /= att.sum()
                xb[hh * hs:(hh + 1) * hs] = att @ vc[l, :pos + 1, ko:ko + hs]
            x = x + a["wo"][l] @ xb
            xb = rms(x, a["rms_ffn"][l])
            h1, h3 = a["w1"][l] @ xb, a["w3"][l] @ xb
            x = x + a["w2"][l] @ ((h1 / (1 + np.exp(-h1))) * h3)
        out.append(wcls @ rms(x, a["rms_final"]))
    return np.array(out)


def test_stories(models):
    section("d: stories260K")
    m = models["stories260K"]
    h = m.llama2c_header
    check((h["dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"], h["vocab_size"]) == (64, 5, 8, 4, 512),
          f"header {h}")
    real, imag = m.llama2c_freq
    cos, sin = tr.rope_cos_sin(m.inv_freq, torch.arange(h["seq_len"]))
    d = max(maxdiff(real, cos), maxdiff(imag, sin))
    check(d < 2e-4, f"run.c frequencies == stored freq_cis_real/imag (max |diff| {d:.1e} over 512 positions)")
    ids = m.generate([1], 64)
    pieces = tr.read_llama2c_tokenizer(TOK512, 512)
    text = tr.llama2c_decode(pieces, ids)
    print("  greedy ids (64 after BOS):", " ".join(map(str, ids)))
    print("  text:", repr(text[:200]))
    check(len(ids) == 64, "64 tokens generated")
    check(text.startswith("Once upon a time"), "the story starts with 'Once upon a time'")
    words = text.split()
    check(len(words) > 20 and sum(w.strip(".,!?\"'").isalpha() for w in words) > 0.9 * len(words),
          "readable: mostly alphabetic words")
    seq = [1] + ids[:15]
    d = maxdiff(m.logits(seq), numpy_runc(STORIES, seq))
    check(d < 1e-4, f"torch reference vs float64 numpy run.c transcription (16 tokens): max |diff| = {d:.2e}")
    return ids, text


# --------------------------------------------------------------------------------------
# (e) BERT
# --------------------------------------------------------------------------------------

def test_bert(tmp):
    section("e: BERT pooling")
    d = mrm.make("bert", os.path.join(tmp, "bert"), seed=1)
    m = tr.load(d)
    check(isinstance(m, tr.BertEncoder), "bert folder loads as an encoder")
    check(m.default_pooling() == "mean", "default pooling read from 1_Pooling/config.json (mean)")
    a = [101, 150, 151, 160, 170, 102]
    b = [101, 200, 102]
    mean = m.embed([a], "mean")[0]
    cls = m.embed([a], "cls")[0]
    check(abs(np.linalg.norm(mean) - 1) < 1e-5 and abs(np.linalg.norm(cls) - 1) < 1e-5,
          f"unit norm (mean {np.linalg.norm(mean):.7f}, cls {np.linalg.norm(cls):.7f})")
    check(maxdiff(mean, cls) > 1e-3, f"mean and CLS pooling differ (max |diff| {maxdiff(mean, cls):.3f})")
    raw = m.embed([a], "mean", normalize=False)[0]
    check(abs(np.linalg.norm(raw) - 1) > 1e-3 and maxdiff(raw / np.linalg.norm(raw), mean) < 1e-6,
          "--no-normalize returns the un-normalised vector")
    batch = m.embed([b, a], "mean")
    check(maxdiff(batch[0], m.embed([b], "mean")[0]) < 1e-5, "mean pooling ignores padding (short sequence in a batch)")
    check(maxdiff(batch[1], mean) < 1e-5, "longest sequence unchanged by batching")
    bc = m.embed([b, a], "cls")
    check(maxdiff(bc[0], m.embed([b], "cls")[0]) < 1e-5, "CLS pooling ignores padding")
    # the mean really is over tokens: recompute it from the hidden states
    hs = m.hidden_states(torch.tensor([a]), torch.ones(1, len(a), dtype=torch.long))[0].numpy()
    mm = hs.mean(0)
    check(maxdiff(mm / np.linalg.norm(mm), mean) < 1e-6, "mean = average of the last hidden states, L2-normalised")
    check(maxdiff(hs[0] / np.linalg.norm(hs[0]), cls) < 1e-6, "cls = first hidden state, L2-normalised")
    return d


# --------------------------------------------------------------------------------------
# files: dtypes, safetensors writer, tokenizers, CLI
# --------------------------------------------------------------------------------------

def test_dtypes(tmp):
    section("f16 / bf16 folders, shards, safetensors writer")
    ref = tr.load(mrm.make("llama", os.path.join(tmp, "l32"), seed=7)).logits(TOKS)
    for dt, tol in (("f16", 2e-2), ("bf16", 1e-1)):
        d = mrm.make("llama", os.path.join(tmp, "l" + dt), seed=7, dtype=dt, shards=2)
        st = SafetensorsFolder(d)
        want = {"f16": "F16", "bf16": "BF16"}[dt]
        check(all(st.info(n).dtype == want for n in st.names()), f"{dt}: every tensor stored as {want}")
        check(not st.problems, f"{dt}: sharded folder has no problems {st.problems[:2]}")
        st.close()
        lg = tr.load(d).logits(TOKS)
        rel = maxdiff(lg, ref) / float(np.abs(ref).max())
        check(np.isfinite(lg).all() and rel < tol, f"{dt}: logits close to f32 (max rel diff {rel:.2e})")
    for arch in mrm.ARCHES:
        path = os.path.join(tmp, arch, "model.safetensors")
        f = SafetensorsFile(path)
        check(not f.problems and f.header_len % 8 == 0, f"{arch}: safetensors valid, header padded to 8 ({f.header_len})")
        f.close()


def test_tokenizers(tmp):
    section("tokenizer files")
    for arch in mrm.ARCHES:
        d = os.path.join(tmp, arch)
        tok = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
        cfg = json.load(open(os.path.join(d, "config.json"), encoding="utf-8"))
        tcfg = json.load(open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8"))
        vocab = tok["model"]["vocab"]
        ids = sorted(vocab.values())
        check(ids == list(range(cfg["vocab_size"])), f"{arch}: vocab ids are 0..{cfg['vocab_size'] - 1}")
        for a in tok["added_tokens"]:
            if vocab.get(a["content"]) != a["id"]:
                check(False, f"{arch}: added token {a['content']} id {a['id']} not in vocab")
                break
        else:
            check(True, f"{arch}: added tokens agree with the vocab ({len(tok['added_tokens'])})")
        if tok["model"]["type"] == "BPE":
            ok = all(a in vocab and b in vocab and a + b in vocab
                     for a, b in (mg.split(" ") for mg in tok["model"]["merges"]))
            check(ok, f"{arch}: every merge's parts and result are tokens ({len(tok['model']['merges'])} merges)")
            b2u = mrm.bytes_to_unicode()
            check(all(c in vocab for c in b2u.values()), f"{arch}: all 256 byte tokens present")
            for kind in ("bos", "eos"):
                t = tcfg.get(f"{kind}_token")
                if t is not None and kind == "bos" and arch != "qwen2":
                    check(vocab[t] == cfg["bos_token_id"], f"{arch}: bos_token {t} == config bos_token_id")
                if t is not None and kind == "eos":
                    check(vocab[t] == cfg["eos_token_id"], f"{arch}: eos_token {t} == config eos_token_id")
        else:
            check([vocab["[PAD]"], vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]]
                  == [0, 100, 101, 102, 103], f"{arch}: [PAD] [UNK] [CLS] [SEP] [MASK] = 0 100 101 102 103")
            lines = open(os.path.join(d, "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
            check(lines == sorted(vocab, key=vocab.get), f"{arch}: vocab.txt matches tokenizer.json")


def test_cli(tmp, models):
    section("CLI")
    py = sys.executable
    script = os.path.join(HERE, "torch_ref.py")
    d = os.path.join(tmp, "llama3")
    out = os.path.join(tmp, "lg.npy")
    toks = "1,2,3,40,50"
    subprocess.run([py, script, "logits", "--model", d, "--tokens", toks, "--out", out], check=True)
    a = np.load(out)
    b = models["llama3"].logits([1, 2, 3, 40, 50])
    check(a.dtype == np.float32 and a.shape == (5, 320) and maxdiff(a, b) == 0.0, "logits --out == library logits")
    txt = subprocess.run([py, script, "logits", "--model", d, "--tokens", "1,2"], check=True,
                         capture_output=True, text=True).stdout.split("\n")
    rows = np.array([[float(x) for x in ln.split()] for ln in txt if ln.strip()], dtype=np.float32)
    check(rows.shape == (2, 320) and maxdiff(rows, b[:2]) == 0.0, "printed logits round-trip exactly (%.9g)")
    g = subprocess.run([py, script, "generate", "--model", STORIES, "--tokens", "1", "-n", "20", "--greedy"],
                       check=True, capture_output=True, text=True).stdout.split()
    check([int(x) for x in g] == models["stories260K"].generate([1], 20), "generate prints the greedy ids")
    e = subprocess.run([py, script, "embed", "--model", os.path.join(tmp, "bert"), "--tokens", "101,150,102",
                        "--pooling", "cls"], check=True, capture_output=True, text=True).stdout.split()
    check(len(e) == 64 and abs(np.linalg.norm(np.array(e, dtype=np.float64)) - 1) < 1e-5, "embed prints a unit vector")


def main() -> int:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in mrm.ARCHES:
            mrm.make(arch, os.path.join(tmp, arch), seed=0)
        models = {}
        for arch in ("llama", "llama3", "qwen2", "mistral", "gpt2"):
            models[arch] = tr.load(os.path.join(tmp, arch))
            models[arch].folder = os.path.join(tmp, arch)
        models["stories260K"] = tr.load(STORIES)
        models["tiny-random-gpt2"] = tr.load(GPT2_DIR)
        models["llama-small-bf16"] = tr.load(mrm.make("llama", os.path.join(tmp, "small"), seed=0, dtype="bf16",
                                                      size="small"))
        test_kv_cache(models)
        test_sliding_window(tmp)
        test_rope_layouts(models)
        test_llama3_rope(models, tmp)
        test_gpt2(models)
        test_stories(models)
        test_bert(tmp)
        test_dtypes(tmp)
        test_tokenizers(tmp)
        test_cli(tmp, models)
    print(f"{N_PASS} passed, {N_FAIL} failed")
    return 1 if N_FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
