#!/usr/bin/python3
"""Sanity checks of torch_train_ref.py that need no C code.

    selftest_torch_train_ref.py [-v]

(a) the batched forward equals torch_ref.py's logits (llama GQA, llama3 rope scaling, mistral,
    qwen2 biases, gpt2), with and without LoRA factors whose B is zero
(b) autograd gradients equal central finite differences (float64) for LoRA factors and for
    every kind of base tensor under full training (llama, qwen2, gpt2 incl. tied embeddings)
(c) a batch's gradient is the sum of its rows' gradients; -1 targets contribute nothing;
    loss_scale scales the gradients and not the reported loss
(d) torch.optim.AdamW with two groups, clipping and the schedule equals a hand-written numpy
    AdamW (decoupled decay, bias correction); the lr schedule's values by hand
(e) PEFT: adapter logits == merged-folder logits (torch_ref), DIR:0.5 twice == DIR once,
    GPT-2 Conv1D (fan_in_fan_out) delta by hand, rslora / alpha_pattern scales
(f) --rope-layout interleaved (llama.cpp-permuted q/k rows) gives the same logits as neox
(g) the CLI writes what the library computes (grads, adamw, train, lr lists, --logits-out)
(h) --base-gguf: a GGUF with llama.cpp's permuted q/k rows gives the HF logits (neox and
    interleaved); Q8_0 tensors are dequantized; --base-gguf-linear-only leaves embeddings
"""

from __future__ import annotations

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
import torch_train_ref as ttr  # noqa: E402

torch.set_grad_enabled(True)
VERBOSE = "-v" in sys.argv
N_PASS = 0
N_FAIL = 0
PY = sys.executable or "/usr/bin/python3"
SCRIPT = os.path.join(HERE, "torch_train_ref.py")


def check(cond, msg: str) -> bool:
    global N_PASS, N_FAIL
    if cond:
        N_PASS += 1
        if VERBOSE:
            print(f"  ok   {msg}")
    else:
        N_FAIL += 1
        print(f"  FAIL {msg}")
    return bool(cond)


def maxdiff(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


TOKS = [[1, 5, 9, 33, 77, 2, 200, 17], [3, 150, 99, 42, 8, 250, 11, 70]]
TGTS = [[5, 9, 33, 77, -1, 200, 17, 4], [-1, -1, 42, 8, 250, 11, 70, 6]]


def lora_init(m: ttr.TrainModel, rng, rank=3, stems=None) -> dict:
    out = {}
    for n, W in m.base.items():
        if n.startswith("blk.") and n.endswith(".weight") and W.dim() == 2:
            if stems is None or n.split(".")[2] in stems:
                out[n + ".lora_a"] = (rng.standard_normal((rank, W.shape[1])) * 0.2).astype(np.float32)
                out[n + ".lora_b"] = (rng.standard_normal((W.shape[0], rank)) * 0.05).astype(np.float32)
    return out


def full_init(m: ttr.TrainModel) -> dict:
    return {n: W.numpy().astype(np.float32) for n, W in m.base.items()}


def run_cli(*args) -> str:
    r = subprocess.run([PY, SCRIPT, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"torch_train_ref {' '.join(args)}: {r.stderr}")
    return r.stdout


# --------------------------------------------------------------------------------------

def test_forward(models):
    print("[a] forward == torch_ref")
    for arch, d in models.items():
        ref = tr.load(d)
        m = ttr.TrainModel(d, torch.float32)
        for row in TOKS:
            want = ref.logits(row)
            with torch.no_grad():
                got = m.forward(torch.tensor([row]))[0].numpy()
            check(maxdiff(want, got) < 1e-5 * max(1.0, np.abs(want).max()), f"{arch}: logits {maxdiff(want, got):.2e}")
        with torch.no_grad():
            batched = m.forward(torch.tensor(TOKS))
            single = torch.cat([m.forward(torch.tensor([r])) for r in TOKS])
        check(maxdiff(batched, single) < 1e-5, f"{arch}: batch rows independent")
        rng = np.random.default_rng(3)
        init = lora_init(m, rng)
        for k in init:
            if k.endswith(".lora_b"):
                init[k][:] = 0
        m.attach_trainable(init, 16.0, None)
        with torch.no_grad():
            z = m.forward(torch.tensor([TOKS[0]]))[0].numpy()
        check(maxdiff(z, ref.logits(TOKS[0])) < 1e-5, f"{arch}: LoRA with B = 0 leaves the logits")


def fd_check(m: ttr.TrainModel, named, toks, tgts, tag, n_elems=3, seed=0):
    rng = np.random.default_rng(seed)
    loss, _ = m.loss_sum(toks, tgts)
    loss.backward()
    worst = 0.0
    for name, t, _ in named:
        g = t.grad.detach().clone()
        gmax = float(g.abs().max())
        flat = t.detach().view(-1)
        idx = rng.choice(flat.numel(), size=min(n_elems, flat.numel()), replace=False)
        # include the largest-gradient element so the check is not all near-zero entries
        idx = list(idx) + [int(g.abs().view(-1).argmax())]
        for j in idx:
            h = 1e-4 * max(1.0, abs(float(flat[j])))
            with torch.no_grad():
                old = float(flat[j])
                flat[j] = old + h
                lp = float(m.loss_sum(toks, tgts)[0])
                flat[j] = old - h
                lm = float(m.loss_sum(toks, tgts)[0])
                flat[j] = old
            fd = (lp - lm) / (2 * h)
            an = float(g.view(-1)[j])
            err = abs(fd - an) / max(abs(an), abs(fd), 1e-3 * gmax, 1e-12)
            worst = max(worst, err)
            if err > 1e-5:
                check(False, f"{tag}: {name}[{j}] autograd {an:.9g} vs finite difference {fd:.9g}")
    check(worst <= 1e-5, f"{tag}: autograd == finite differences over {len(named)} tensors (worst rel {worst:.1e})")


def test_grads(models):
    print("[b] autograd == finite differences")
    toks, tgts = torch.tensor(TOKS), torch.tensor(TGTS)
    for arch in ("llama", "qwen2", "gpt2"):
        m = ttr.TrainModel(models[arch], torch.float64)
        named = m.attach_trainable(lora_init(m, np.random.default_rng(1)), 16.0, 3)
        fd_check(m, named, toks, tgts, f"{arch} LoRA")
        m = ttr.TrainModel(models[arch], torch.float64)
        named = m.attach_trainable(full_init(m), None, None)
        fd_check(m, named, toks, tgts, f"{arch} full", n_elems=2)
        if arch == "gpt2":
            check(not m.has("output.weight"), "gpt2: tied, no output.weight")


def grads_of(folder, init, toks, tgts, scale=1.0, alpha=16.0):
    m = ttr.TrainModel(folder, torch.float64)
    named = m.attach_trainable(init, alpha, None)
    loss, cnt = m.loss_sum(torch.tensor(toks), torch.tensor(tgts))
    (loss * scale).backward()
    return float(loss), cnt, {n: t.grad.clone() for n, t, _ in named}


def test_batch(models):
    print("[c] batch = sum of rows; ignored targets; loss_scale")
    for arch in ("llama", "gpt2"):
        m = ttr.TrainModel(models[arch], torch.float64)
        init = lora_init(m, np.random.default_rng(2))
        l2, c2, g2 = grads_of(models[arch], init, TOKS, TGTS)
        la, ca, ga = grads_of(models[arch], init, TOKS[:1], TGTS[:1])
        lb, cb, gb = grads_of(models[arch], init, TOKS[1:], TGTS[1:])
        check(c2 == ca + cb == sum(t >= 0 for r in TGTS for t in r), f"{arch}: counted targets {c2}")
        check(abs(l2 - la - lb) < 1e-9 * abs(l2), f"{arch}: loss adds over rows")
        check(max(maxdiff(g2[n], ga[n] + gb[n]) for n in g2) < 1e-12, f"{arch}: gradients add over rows")
        # changing an ignored position's target changes nothing; changing a counted one does
        t2 = [r[:] for r in TGTS]
        t2[1][0] = -1
        l3, _, g3 = grads_of(models[arch], init, TOKS, t2)
        check(l3 == l2 and all(torch.equal(g3[n], g2[n]) for n in g2), f"{arch}: -1 targets ignored")
        l4, _, g4 = grads_of(models[arch], init, TOKS, TGTS, scale=0.25)
        check(l4 == l2 and max(maxdiff(g4[n], 0.25 * g2[n]) for n in g2) < 1e-14, f"{arch}: loss_scale")
        # the loss is the sum of -log softmax at the counted targets
        with torch.no_grad():
            m2 = ttr.TrainModel(models[arch], torch.float64)
            m2.attach_trainable(init, 16.0, None)
            lg = m2.forward(torch.tensor(TOKS))
            lp = torch.log_softmax(lg, -1)
            s = -sum(float(lp[b, t, y]) for b in range(2) for t in range(8) for y in [TGTS[b][t]] if y >= 0)
        check(abs(s - l2) < 1e-9 * abs(l2), f"{arch}: loss = sum of -log p(target)")


def np_adamw(ws, grads_seq, lrs, b1, b2, eps, wd, decay, clip):
    ws = {n: w.astype(np.float64).copy() for n, w in ws.items()}
    m = {n: np.zeros_like(w) for n, w in ws.items()}
    v = {n: np.zeros_like(w) for n, w in ws.items()}
    norms = []
    for s, (gs, lr) in enumerate(zip(grads_seq, lrs)):
        gs = {n: g.astype(np.float64) for n, g in gs.items()}
        norm = math.sqrt(sum(float((g * g).sum()) for g in gs.values()))
        norms.append(norm)
        if clip > 0:
            coef = clip / (norm + 1e-6)
            if coef < 1:
                gs = {n: g * coef for n, g in gs.items()}
        t = s + 1
        for n in ws:
            if decay[n]:
                ws[n] = ws[n] * (1 - lr * wd)
            m[n] = b1 * m[n] + (1 - b1) * gs[n]
            v[n] = b2 * v[n] + (1 - b2) * gs[n] * gs[n]
            mh = m[n] / (1 - b1 ** t)
            vh = v[n] / (1 - b2 ** t)
            ws[n] = ws[n] - lr * mh / (np.sqrt(vh) + eps)
    return ws, m, v, norms


def test_adamw(tmp):
    print("[d] AdamW and the schedule")
    L = ttr.lr_at
    check(L("constant", 1.0, 0.0, 0, 10, 5) == 1.0, "constant")
    check(abs(L("cosine", 1.0, 0.0, 4, 14, 0) - 0.25) < 1e-15 and L("cosine", 1.0, 0.0, 4, 14, 3) == 1.0,
          "warmup lr*(step+1)/warmup")
    check(L("cosine", 1.0, 0.1, 4, 14, 4) == 1.0 and abs(L("cosine", 1.0, 0.1, 4, 14, 9) - 0.55) < 1e-12
          and abs(L("cosine", 1.0, 0.1, 4, 14, 14) - 0.1) < 1e-15 and abs(L("cosine", 1.0, 0.1, 4, 14, 99) - 0.1) < 1e-15,
          "cosine: peak after warmup, half-way mean, min_lr at and after the end")
    check(abs(L("linear", 2.0, 0.0, 0, 10, 5) - 1.0) < 1e-15 and L("linear", 2.0, 0.0, 0, 10, 10) == 0.0, "linear")
    rng = np.random.default_rng(5)
    ws = {"blk.0.attn_q.weight.lora_a": rng.standard_normal((3, 7)).astype(np.float32),
          "blk.0.attn_norm.weight": rng.standard_normal(7).astype(np.float32),
          "blk.0.attn_q.bias": rng.standard_normal(5).astype(np.float32),
          "token_embd.weight": rng.standard_normal((4, 7)).astype(np.float32)}
    steps = 10
    gseq = [{n: (rng.standard_normal(w.shape) * (0.1 + s)).astype(np.float32) for n, w in ws.items()}
            for s in range(steps)]
    lrs = [L("cosine", 1e-2, 1e-3, 3, steps, s) for s in range(steps)]
    decay = {n: w.ndim == 2 for n, w in ws.items()}
    want, wm, wv, wnorms = np_adamw(ws, gseq, lrs, 0.9, 0.95, 1e-8, 0.1, decay, 2.0)
    init = os.path.join(tmp, "adam_init.safetensors")
    ttr.write_st(init, ws)
    gfiles = []
    for s, g in enumerate(gseq):
        gfiles.append(os.path.join(tmp, f"adam_g{s}.safetensors"))
        ttr.write_st(gfiles[-1], g)
    out = os.path.join(tmp, "adam_out.safetensors")
    args = ["adamw", "--init", init, "--out", out, "--lr", "1e-2", "--min-lr", "1e-3", "--schedule", "cosine",
            "--warmup", "3", "--beta2", "0.95", "--weight-decay", "0.1", "--clip", "2.0", "--moments"]
    for g in gfiles:
        args += ["--grads", g]
    text = run_cli(*args)
    got, _ = ttr.read_st(out)
    worst = max(maxdiff(want[n], got[n]) / max(1e-30, np.abs(want[n]).max()) for n in ws)
    check(worst < 1e-6, f"10 AdamW steps (2 groups, clip, cosine+warmup) == hand-written AdamW (rel {worst:.1e})")
    check(max(maxdiff(wm[n], got[n + ".adam_m"]) for n in ws) < 1e-6 and
          max(maxdiff(wv[n], got[n + ".adam_v"]) for n in ws) < 1e-5, "moments")
    lines = dict((tuple(line.split()[:2]), float(line.split()[2])) for line in text.split("\n") if line)
    check(all(abs(lines[("lr", str(s))] - lrs[s]) < 1e-15 for s in range(steps)), "printed lrs")
    check(all(abs(lines[("norm", str(s))] - wnorms[s]) < 1e-9 * wnorms[s] for s in range(steps)), "printed norms")
    # decay only where 2-D: with zero gradients and wd, 1-D tensors must not move
    zero = [{n: np.zeros_like(w) for n, w in ws.items()}]
    ttr.write_st(gfiles[0], zero[0])
    run_cli("adamw", "--init", init, "--out", out, "--lr", "0.5", "--weight-decay", "0.1", "--grads", gfiles[0])
    got, _ = ttr.read_st(out)
    check(np.array_equal(got["blk.0.attn_norm.weight"], ws["blk.0.attn_norm.weight"]) and
          maxdiff(got["token_embd.weight"], ws["token_embd.weight"].astype(np.float64) * (1 - 0.05)) < 1e-6,
          "weight decay only on 2-D tensors, decoupled (w *= 1 - lr*wd)")


def test_peft(models, tmp):
    print("[e] PEFT adapters")
    for arch, targets in (("llama", "q,k,v,o,gate,up,down"), ("qwen2", "q,v"), ("gpt2", "qkv,o,up,down")):
        d = models[arch]
        ad = os.path.join(tmp, f"ad_{arch}")
        run_cli("make-adapter", "--model", d, "--out", ad, "--targets", targets, "--rank", "4", "--alpha", "8")
        ids = "1,5,9,33,77,2,200"
        a1 = os.path.join(tmp, "a1.npy")
        run_cli("logits", "--model", d, "--adapter", ad, "--ids", ids, "--out", a1)
        a2 = os.path.join(tmp, "a2.npy")
        run_cli("logits", "--model", d, "--adapter", ad + ":0.5", "--adapter", ad + ":0.5", "--ids", ids, "--out", a2)
        merged = os.path.join(tmp, f"merged_{arch}")
        run_cli("merge", "--model", d, "--adapter", ad, "--out", merged)
        ref = tr.load(merged).logits(tr.parse_ids(ids))
        base = tr.load(d).logits(tr.parse_ids(ids))
        la, lb = np.load(a1), np.load(a2)
        check(maxdiff(la, ref) < 1e-5, f"{arch}: adapter logits == merged folder's logits ({maxdiff(la, ref):.1e})")
        check(maxdiff(la, lb) < 1e-6, f"{arch}: two half-scaled copies == the adapter")
        check(maxdiff(la, base) > 1e-2, f"{arch}: the adapter changes the logits ({maxdiff(la, base):.2e})")
        printed = np.array([[float(x) for x in line.split()] for line in
                            run_cli("logits", "--model", d, "--adapter", ad, "--ids", ids).strip().split("\n")])
        check(maxdiff(printed, la) < 1e-6, f"{arch}: printed logits == saved logits")
    # GPT-2 by hand: HF Conv1D weight [in, out] + PEFT delta (B A)^T * alpha / r
    ad = os.path.join(tmp, "ad_gpt2")
    with open(os.path.join(ad, "adapter_config.json")) as f:
        cfg = json.load(f)
    check(cfg["fan_in_fan_out"] is True and cfg["target_modules"] == ["c_attn", "c_fc", "c_proj"], "gpt2 config")
    at, _ = ttr.read_st(os.path.join(ad, "adapter_model.safetensors"))
    A = at["base_model.model.transformer.h.1.attn.c_attn.lora_A.weight"]
    B = at["base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"]
    mt, _ = ttr.read_st(os.path.join(tmp, "merged_gpt2", "model.safetensors"))
    from modelfile import SafetensorsFolder
    st = SafetensorsFolder(models["gpt2"])
    W = st.tensor_array("h.1.attn.c_attn.weight").astype(np.float64)
    st.close()
    check(A.shape == (4, 64) and B.shape == (192, 4), "gpt2 c_attn lora_A [r, in], lora_B [out, r]")
    check(maxdiff(mt["h.1.attn.c_attn.weight"], W + (B.astype(np.float64) @ A) .T * 2.0) < 1e-6,
          "gpt2 merge: Conv1D W + (alpha/r) (B A)^T")
    # rslora and alpha_pattern
    ad = os.path.join(tmp, "ad_llama")
    with open(os.path.join(ad, "adapter_config.json")) as f:
        cfg = json.load(f)
    cfg2 = dict(cfg, use_rslora=True, alpha_pattern={"v_proj": 2.0})
    ad2 = os.path.join(tmp, "ad_llama_rs")
    os.makedirs(ad2, exist_ok=True)
    with open(os.path.join(ad2, "adapter_config.json"), "w") as f:
        json.dump(cfg2, f)
    ttr.write_st(os.path.join(ad2, "adapter_model.safetensors"), ttr.read_st(os.path.join(ad, "adapter_model.safetensors"))[0])
    m = ttr.TrainModel(models["llama"])
    done = {n: s for n, _, s in ttr.load_peft(m, ad2, 1.0)}
    check(abs(done["blk.0.attn_q.weight"] - 8 / 2) < 1e-12 and abs(done["blk.1.attn_v.weight"] - 2 / 2) < 1e-12,
          "rslora alpha/sqrt(r); alpha_pattern per module")


def test_rope_layout(models):
    print("[f] interleaved rows")
    for arch in ("llama", "qwen2"):
        a = ttr.TrainModel(models[arch], torch.float64, "neox")
        b = ttr.TrainModel(models[arch], torch.float64, "interleaved")
        with torch.no_grad():
            la, lb = a.forward(torch.tensor(TOKS)), b.forward(torch.tensor(TOKS))
        check(maxdiff(la, lb) < 1e-10, f"{arch}: permuted rows + adjacent-pair RoPE == HF rows + rotate-half")
        check(maxdiff(a.base["blk.0.attn_q.weight"], b.base["blk.0.attn_q.weight"]) > 0, f"{arch}: rows differ")


def test_cli(models, tmp):
    print("[g] CLI")
    d = models["llama"]
    m = ttr.TrainModel(d, torch.float64)
    init = lora_init(m, np.random.default_rng(9), rank=2, stems={"attn_q", "attn_v"})
    ip = os.path.join(tmp, "init.safetensors")
    ttr.write_st(ip, init)
    bp = os.path.join(tmp, "batch.json")
    with open(bp, "w") as f:
        json.dump({"tokens": TOKS, "targets": TGTS, "loss_scale": 0.5}, f)
    gp = os.path.join(tmp, "grads.safetensors")
    text = run_cli("grads", "--model", d, "--init", ip, "--batch", bp, "--alpha", "4", "--rank", "2",
                   "--expect-targets", "q,v", "--out", gp)
    loss, cnt, want = grads_of(d, init, TOKS, TGTS, scale=0.5, alpha=4.0)
    got, meta = ttr.read_st(gp)
    check(list(got) == list(init) and all(got[n].shape == init[n].shape for n in init), "grads: names and shapes")
    check(max(maxdiff(got[n], want[n]) for n in init) < 1e-6, "grads file == in-process gradients")
    check(abs(float(meta["loss_sum"]) - loss) < 1e-9 * loss and int(meta["n_counted"]) == cnt
          and f"loss_sum {meta['loss_sum']}" in text, "loss metadata")
    r = subprocess.run([PY, SCRIPT, "grads", "--model", d, "--init", ip, "--batch", bp, "--alpha", "4",
                        "--expect-targets", "q,k,v", "--out", gp], capture_output=True, text=True)
    check(r.returncode != 0 and "missing" in r.stderr, "--expect-targets catches a missing target")
    # train == grads + adamw over the same trajectory (one step: same gradient)
    fp = os.path.join(tmp, "final.safetensors")
    common = ["--lr", "1e-2", "--weight-decay", "0.1", "--clip", "0.5", "--schedule", "cosine", "--warmup", "1",
              "--total-steps", "4"]
    run_cli("train", "--model", d, "--init", ip, "--batch", bp, "--alpha", "4", "--steps", "1", "--out", fp, *common)
    ap = os.path.join(tmp, "final2.safetensors")
    run_cli("grads", "--model", d, "--init", ip, "--batch", bp, "--alpha", "4", "--out", gp)
    run_cli("adamw", "--init", ip, "--grads", gp, "--out", ap, *common)
    t1, meta = ttr.read_st(fp)
    t2, _ = ttr.read_st(ap)
    check(max(maxdiff(t1[n], t2[n]) for n in init) < 1e-7, "train step == grads + adamw step")
    losses = [float(x) for x in meta["losses"].split(",")]
    check(len(losses) == 2 and losses[1] < losses[0], f"train: loss goes down {losses}")
    lp = os.path.join(tmp, "logits.safetensors")
    run_cli("grads", "--model", d, "--init", ip, "--batch", bp, "--alpha", "4", "--out", gp, "--logits-out", lp)
    lg, _ = ttr.read_st(lp)
    m2 = ttr.TrainModel(d, torch.float64)
    m2.attach_trainable(init, 4.0, None)
    with torch.no_grad():
        want = m2.forward(torch.tensor(TOKS)).reshape(-1, m2.cfg.vocab_size)
    check(lg["logits"].shape == tuple(want.shape) and maxdiff(lg["logits"], want) < 1e-6, "--logits-out")
    text = run_cli("lr", "--schedule", "linear,cosine", "--warmup", "0,2", "--lr", "1", "--min-lr", "0.5",
                   "--total-steps", "6", "--steps", "8")
    got = {}
    for line in text.strip().split("\n"):
        k, st, v = line.split()
        got[(k, int(st))] = float(v)
    check(len(got) == 32 and all(got[(f"lr-{k}-{w}", st)] == ttr.lr_at(k, 1.0, 0.5, w, 6, st)
                                 for k in ("linear", "cosine") for w in (0, 2) for st in range(8)), "lr lists")


def q8_0_roundtrip(a: np.ndarray) -> tuple[bytes, np.ndarray]:
    """ggml's reference Q8_0: blocks of 32 along the row, d = amax / 127 (stored f16), q = round(x / d)."""
    x = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    d = np.abs(x).max(axis=1) / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0)
    q = np.round(x * inv[:, None]).astype(np.int8)
    d16 = d.astype(np.float16)
    blocks = np.zeros(x.shape[0], dtype=np.dtype([("d", "<f2"), ("qs", "i1", 32)]))
    blocks["d"], blocks["qs"] = d16, q
    return blocks.tobytes(), (d16.astype(np.float32)[:, None] * q.astype(np.float32)).reshape(a.shape)


def test_base_gguf(models, tmp):
    print("[h] --base-gguf")
    import refbuild
    d = models["llama"]
    m = ttr.TrainModel(d, torch.float64)
    H, KV = m.cfg.n_heads, m.cfg.n_kv_heads
    f32, q8, deq = [], [], {}
    for name, t in m.base.items():
        a = t.numpy().astype(np.float32)
        mm = name.split(".")
        if len(mm) == 4 and mm[2] in ("attn_q", "attn_k"):
            a = tr.permute_rows_for_interleaved(torch.from_numpy(a), H if mm[2] == "attn_q" else KV).numpy()
        ne = list(reversed(a.shape))
        f32.append((name, "F32", np.ascontiguousarray(a), ne))
        if a.ndim == 2:
            raw, dq = q8_0_roundtrip(a)
            q8.append((name, "Q8_0", raw, ne))
            deq[name] = dq
        else:
            q8.append((name, "F32", np.ascontiguousarray(a), ne))
    g1, g2 = os.path.join(tmp, "base_f32.gguf"), os.path.join(tmp, "base_q8.gguf")
    refbuild.write_gguf(g1, [], f32)
    refbuild.write_gguf(g2, [], q8)
    with torch.no_grad():
        want = m.forward(torch.tensor(TOKS))
        for lay in ("neox", "interleaved"):
            m2 = ttr.TrainModel(d, torch.float64, lay)
            m2.use_gguf_base(g1)
            check(maxdiff(m2.forward(torch.tensor(TOKS)), want) < 1e-10, f"F32 GGUF, permuted rows, {lay}")
        m3 = ttr.TrainModel(d, torch.float64, "interleaved")
        m3.use_gguf_base(g2)
        check(all(np.array_equal(m3.base[n].numpy(), deq[n]) for n in deq), "Q8_0 dequantized as ggml's reference")
        m4 = ttr.TrainModel(d, torch.float64, "interleaved")
        m4.use_gguf_base(g2, linear_only=True)
        check(np.array_equal(m4.base["token_embd.weight"].numpy(), m.base["token_embd.weight"].numpy())
              and np.array_equal(m4.base["blk.1.ffn_up.weight"].numpy(), deq["blk.1.ffn_up.weight"]),
              "linear-only keeps the embedding, takes the blocks' matrices")
        lq = m3.forward(torch.tensor(TOKS))
        check(0 < maxdiff(lq, want) < 0.05, f"Q8_0 base changes the logits a little ({maxdiff(lq, want):.1e})")


def test_dropout_masks(models):
    print("[i] given LoRA dropout masks")
    toks = torch.tensor(TOKS)
    rng = np.random.default_rng(5)
    for arch in ("llama", "gpt2"):
        d = models[arch]
        init = lora_init(ttr.TrainModel(d, torch.float64), rng)
        def logits_with(masks):
            m = ttr.TrainModel(d, torch.float64)
            m.attach_trainable(init, 16.0, None)
            m.drop_masks = masks
            with torch.no_grad():
                return m.forward(toks)
        plain = logits_with({})
        n = toks.numel()
        wnames = sorted({k[:-len(".lora_a")] for k in init if k.endswith(".lora_a")})
        ones = {w: torch.ones(n, init[w + ".lora_a"].shape[1], dtype=torch.float64) for w in wnames}
        check(maxdiff(logits_with(ones), plain) < 1e-12, f"{arch}: all-ones masks leave the logits")
        # zero masks on every LoRA input == the base model (B·A·0 = 0)
        zeros = {w: torch.zeros_like(v) for w, v in ones.items()}
        base = ttr.TrainModel(d, torch.float64)
        with torch.no_grad():
            want = base.forward(toks)
        check(maxdiff(logits_with(zeros), want) < 1e-12, f"{arch}: all-zero masks give the base model")
        # a mask that is the same for every token drops/scales input columns: the same as A with
        # those columns scaled, A·diag(keep), and no mask
        w = wnames[0]
        cols = init[w + ".lora_a"].shape[1]
        keep = (rng.random(cols) > 0.3).astype(np.float64) / 0.7
        masks = {w: torch.tensor(np.tile(keep, (n, 1)))}
        init2 = dict(init)
        init2[w + ".lora_a"] = (init[w + ".lora_a"].astype(np.float64) * keep).astype(np.float64)
        m2 = ttr.TrainModel(d, torch.float64)
        m2.attach_trainable(init2, 16.0, None)
        with torch.no_grad():
            want2 = m2.forward(toks)
        check(maxdiff(logits_with(masks), want2) < 1e-10,
              f"{arch}: a column mask on {w} equals A with those columns scaled")


def main() -> int:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="ttr-selftest.") as tmp:
        models = {}
        for arch in ("llama", "llama3", "mistral", "qwen2", "gpt2"):
            models[arch] = mrm.make(arch, os.path.join(tmp, arch), seed=7,
                                    window=4 if arch == "mistral" else None)
        test_forward(models)
        test_grads(models)
        test_batch(models)
        test_adamw(tmp)
        test_peft(models, tmp)
        test_rope_layout(models)
        test_cli(models, tmp)
        test_base_gguf(models, tmp)
        test_dropout_masks(models)
    print(f"{N_PASS} passed, {N_FAIL} failed")
    return 1 if N_FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
