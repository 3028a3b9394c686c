#!/usr/bin/env python3
"""
An independent numpy transcription of ggml's reference quantizers, used as
the oracle for tests/tensor/test_kernels.c.

Transcribed from ggml/src/ggml-quants.c (ggml-org/llama.cpp):
quantize_row_q8_0_ref, quantize_row_q4_0_ref, quantize_row_q4_K_ref (with
make_qkx2_quants and get_scale_min_k4), quantize_row_q6_K_ref (with
make_qx_quants, rmse_type 1, no importance weights), quantize_row_q8_K_ref,
and GGML_FP32_TO_FP16 / GGML_FP32_TO_BF16.

Every value is an np.float32 and every C float expression is evaluated in the
same grouping (a*b*c is (a*b)*c); sums that ggml accumulates in a loop are
accumulated sequentially with np.add.accumulate, never with np.sum (pairwise).
Python ints never meet np.float32 directly (numpy 1.x would widen to float64).

Usage: ggml_quant_ref.py TYPE IN.f32 OUT.bin
  TYPE: q8_0 q4_0 q4_K q6_K q8_K f16 bf16; IN is little-endian float32, a
  whole number of blocks. Prints "ok", or "skip: ..." when numpy is missing.
"""
import sys

try:
    import numpy as np
except ImportError as e:  # the C test turns this into a SKIP
    print("skip: numpy is not importable:", e)
    sys.exit(0)

F = np.float32
GROUP_MAX_EPS = F(1e-15)


def seq_sum(terms, init=True):
    """C's `float s = 0; for (...) s += t[i];` (init) or `s = t[0]; s += t[i>0]`."""
    terms = np.asarray(terms, dtype=F)
    if init:
        terms = np.concatenate([np.zeros(1, dtype=F), terms])
    return np.add.accumulate(terms, dtype=F)[-1]


def nearest_int(v):
    """ggml's nearest_int: the bits of v + 1.5*2^23 (round half to even)."""
    val = np.asarray(v, dtype=F) + F(12582912.0)
    i = np.asarray(val, dtype=F).view(np.int32).astype(np.int64)
    return (i & 0x007FFFFF) - 0x00400000


def f16_bytes(v):
    return np.asarray(v, dtype=F).astype(np.float16).tobytes()


def f16_val(v):
    return F(np.float16(F(v)))


def first_absmax(x):
    """`if (|x_i| > amax) { amax = |x_i|; max = x_i; }` from amax = 0."""
    ax = np.abs(x)
    i = int(np.argmax(ax))  # first occurrence, like the strict >
    if not ax[i] > F(0):
        return F(0), F(0)
    return ax[i], x[i]


def roundf(v):
    """C roundf: half away from zero (exact in float64 for float32 inputs)."""
    d = np.asarray(v, dtype=np.float64)
    return np.where(d >= 0, np.floor(d + 0.5), -np.floor(-d + 0.5))


# ---- 32-element blocks ------------------------------------------------------------


def q8_0(x):
    out = bytearray()
    for xb in x.reshape(-1, 32):
        amax = F(0)
        for v in np.abs(xb):  # MAX(amax, |v|)
            amax = amax if amax > v else v
        d = amax / F(127)
        idv = F(1) / d if d != F(0) else F(0)
        q = roundf(xb * idv).astype(np.int64)
        out += f16_bytes(d) + (q & 0xFF).astype(np.uint8).tobytes()
    return bytes(out)


def q4_0(x):
    out = bytearray()
    for xb in x.reshape(-1, 32):
        _, mx = first_absmax(xb)
        d = mx / F(-8)
        idv = F(1) / d if d != F(0) else F(0)
        v = xb * idv + F(8.5)
        q = np.minimum(15, np.trunc(v.astype(np.float64)).astype(np.int64))
        qs = (q[:16] | (q[16:] << 4)) & 0xFF
        out += f16_bytes(d) + qs.astype(np.uint8).tobytes()
    return bytes(out)


# ---- Q4_K ----------------------------------------------------------------------------


def make_qkx2_quants(nmax, x, weights, rmin, rdelta, nstep):
    """Returns (L, scale, the_min) as ggml's make_qkx2_quants with use_mad false."""
    mn = F(np.min(x))
    mx = F(np.max(x))
    sum_w = seq_sum(weights, init=False)
    sum_x = seq_sum(weights * x, init=False)
    if mn > F(0):
        mn = F(0)
    if mx == mn:
        return np.zeros(len(x), dtype=np.int64), F(0), -mn
    iscale = F(nmax) / (mx - mn)
    scale = F(1) / iscale
    L = np.clip(nearest_int(iscale * (x - mn)), 0, nmax)
    diff = scale * L.astype(F) + mn - x
    diff = diff * diff
    best_error = seq_sum(weights * diff)
    if nstep < 1:
        return L, scale, -mn
    for s in range(nstep + 1):
        iscale = (F(rmin) + F(rdelta) * F(s) + F(nmax)) / (mx - mn)
        laux = np.clip(nearest_int(iscale * (x - mn)), 0, nmax)
        lf = laux.astype(F)
        wl = weights * lf
        sum_l = seq_sum(wl)
        sum_l2 = seq_sum(wl * lf)
        sum_xl = seq_sum(wl * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > F(0):
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > F(0):
                this_min = F(0)
                this_scale = sum_xl / sum_l2
            diff = this_scale * lf + this_min - x
            diff = diff * diff
            cur_error = seq_sum(weights * diff)
            if cur_error < best_error:
                L = laux
                best_error = cur_error
                scale = this_scale
                mn = this_min
    return L, scale, -mn


def get_scale_min_k4(j, q):
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def q4_K(x):
    out = bytearray()
    for xb in x.reshape(-1, 256):
        L = np.zeros(256, dtype=np.int64)
        scales = [F(0)] * 8
        mins = [F(0)] * 8
        max_scale = F(0)
        max_min = F(0)
        for j in range(8):
            xs = xb[32 * j:32 * j + 32]
            sum_x2 = seq_sum(xs * xs)
            av_x = np.sqrt(sum_x2 / F(32))
            weights = av_x + np.abs(xs)
            Lj, scales[j], mins[j] = make_qkx2_quants(15, xs, weights, -1.0, 0.1, 20)
            L[32 * j:32 * j + 32] = Lj
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        inv_scale = F(63) / max_scale if max_scale > F(0) else F(0)
        inv_min = F(63) / max_min if max_min > F(0) else F(0)
        sc = [0] * 12
        for j in range(8):
            ls = min(63, int(nearest_int(inv_scale * scales[j])) & 0xFF)  # uint8_t, then MIN
            lm = min(63, int(nearest_int(inv_min * mins[j])) & 0xFF)
            if j < 4:
                sc[j] = ls
                sc[j + 4] = lm
            else:
                sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
                sc[j - 4] |= (ls >> 4) << 6
                sc[j] |= (lm >> 4) << 6
        d_b = f16_bytes(max_scale / F(63))
        dmin_b = f16_bytes(max_min / F(63))
        d16 = F(np.frombuffer(d_b, dtype=np.float16)[0])
        dmin16 = F(np.frombuffer(dmin_b, dtype=np.float16)[0])
        for j in range(8):
            s, m = get_scale_min_k4(j, sc)
            d = d16 * F(s)
            if d == F(0):
                continue
            dm = dmin16 * F(m)
            xs = xb[32 * j:32 * j + 32]
            L[32 * j:32 * j + 32] = np.clip(nearest_int((xs + dm) / d), 0, 15)
        qs = bytearray()
        for j in range(0, 256, 64):
            qs += ((L[j:j + 32] | (L[j + 32:j + 64] << 4)) & 0xFF).astype(np.uint8).tobytes()
        out += d_b + dmin_b + bytes(sc) + bytes(qs)
    return bytes(out)


# ---- Q6_K ----------------------------------------------------------------------------


def make_qx_quants(nmax, x):
    """ggml's make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL): (L, scale)."""
    amax, mx = first_absmax(x)
    if amax < GROUP_MAX_EPS:
        return np.zeros(len(x), dtype=np.int64), F(0)
    w = x * x
    iscale = F(-nmax) / mx
    l = np.clip(nearest_int(iscale * x), -nmax, nmax - 1)
    L = l + nmax
    lf = l.astype(F)
    sumlx = seq_sum(w * x * lf)
    suml2 = seq_sum(w * lf * lf)
    scale = sumlx / suml2 if suml2 != F(0) else F(0)
    best = scale * sumlx
    for s in range(-9, 10):
        if s == 0:
            continue
        iscale = -(F(nmax) + F(0.1) * F(s)) / mx
        l = np.clip(nearest_int(iscale * x), -nmax, nmax - 1)
        lf = l.astype(F)
        sumlx = seq_sum(w * x * lf)
        suml2 = seq_sum(w * lf * lf)
        if suml2 > F(0) and sumlx * sumlx > best * suml2:
            L = l + nmax
            scale = sumlx / suml2
            best = scale * sumlx
    return L, scale


def q6_K(x):
    out = bytearray()
    for xb in x.reshape(-1, 256):
        L = np.zeros(256, dtype=np.int64)
        scales = [F(0)] * 16
        max_scale = F(0)
        max_abs_scale = F(0)
        for ib in range(16):
            Lb, scales[ib] = make_qx_quants(32, xb[16 * ib:16 * ib + 16])
            L[16 * ib:16 * ib + 16] = Lb
            a = abs(scales[ib])
            if a > max_abs_scale:
                max_abs_scale = a
                max_scale = scales[ib]
        if max_abs_scale < GROUP_MAX_EPS:
            out += bytes(210)
            continue
        iscale = F(-128) / max_scale
        d_b = f16_bytes(F(1) / iscale)
        d16 = F(np.frombuffer(d_b, dtype=np.float16)[0])
        sc = [min(127, int(nearest_int(iscale * scales[ib]))) for ib in range(16)]
        sc = [((v + 128) & 0xFF) - 128 for v in sc]  # int8_t storage
        for j in range(16):
            d = d16 * F(sc[j])
            if d == F(0):
                continue
            xs = xb[16 * j:16 * j + 16]
            L[16 * j:16 * j + 16] = np.clip(nearest_int(xs / d), -32, 31) + 32
        ql = bytearray(128)
        qh = bytearray(64)
        for h, j in enumerate(range(0, 256, 128)):
            for l in range(32):
                q1, q2, q3, q4 = (int(L[j + l + o]) for o in (0, 32, 64, 96))
                ql[64 * h + l] = (q1 & 0xF) | ((q3 & 0xF) << 4)
                ql[64 * h + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4)
                qh[32 * h + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)
        out += bytes(ql) + bytes(qh) + bytes(v & 0xFF for v in sc) + d_b
    return bytes(out)


# ---- Q8_K and the float types ------------------------------------------------------------


def q8_K(x):
    out = bytearray()
    for xb in x.reshape(-1, 256):
        amax, mx = first_absmax(xb)
        if amax == F(0):
            out += bytes(292)  # ggml leaves bsums untouched here; the C side zeroes them
            continue
        iscale = F(-127) / mx
        q = np.minimum(127, nearest_int(iscale * xb))
        bsums = q.reshape(16, 16).sum(axis=1)
        out += np.array([F(1) / iscale], dtype="<f4").tobytes()
        out += (q & 0xFF).astype(np.uint8).tobytes()
        out += bsums.astype("<i2").tobytes()
    return bytes(out)


def f16(x):
    return x.astype("<f2").tobytes()


def bf16(x):
    u = x.view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = np.where(nan, (u >> 16) | 64, (u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    return r.astype("<u2").tobytes()


def main():
    kinds = {"q8_0": q8_0, "q4_0": q4_0, "q4_K": q4_K, "q6_K": q6_K, "q8_K": q8_K, "f16": f16, "bf16": bf16}
    if len(sys.argv) != 4 or sys.argv[1] not in kinds:
        print("usage: ggml_quant_ref.py {%s} IN.f32 OUT.bin" % ",".join(kinds))
        return 2
    x = np.fromfile(sys.argv[2], dtype="<f4").astype(F)
    with open(sys.argv[3], "wb") as f:
        f.write(kinds[sys.argv[1]](x))
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
