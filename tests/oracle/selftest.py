#!/usr/bin/python3
"""Self-tests of the oracle: its readers against real files written by other tools
(llama.cpp's vocab GGUFs, a Hugging Face safetensors file), its writer/reader round trip,
its float conversions against torch/numpy, and each checker on a correct file and on
deliberately broken ones.  Exit 0 when everything passes.

    selftest.py [-v] [-k SUBSTRING]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import glob
import io
import json
import os
import struct
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import numpy as np  # noqa: E402

import check_gpt2_gguf  # noqa: E402
import check_hf_export  # noqa: E402
import check_llama2c_gguf  # noqa: E402
import modeldump  # noqa: E402
import modelfile as mf  # noqa: E402
import refbuild  # noqa: E402

ASSETS = os.environ.get("ORACLE_ASSETS", "/work/shared/assets")
VOCAB_DIR = os.path.join(ASSETS, "tokenizers/llama.cpp-vocab")
CKPT = os.path.join(ASSETS, "llm/stories260K/stories260K.bin")
TOK = os.path.join(ASSETS, "llm/stories260K/tok512.bin")
GPT2 = os.path.join(ASSETS, "hf/tiny-random-gpt2")

TESTS = []
VERBOSE = False


def test(fn):
    TESTS.append(fn)
    return fn


def run_quiet(fn, *args) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = fn(*args)
    return rc, buf.getvalue()


def expect_pass(fn, *args):
    rc, out = run_quiet(fn, *args)
    assert rc == 0, f"expected success, got:\n{out}"


def expect_fail(fn, *args, contains: str = ""):
    rc, out = run_quiet(fn, *args)
    assert rc != 0, f"expected failure ({contains}), but the check passed"
    assert contains in out, f"failure output lacks {contains!r}:\n{out}"
    if VERBOSE:
        print("      rejected as expected:", [l for l in out.splitlines() if contains in l][:1])


# --------------------------------------------------------------------------------------
# readers against real files
# --------------------------------------------------------------------------------------

@test
def vocab_ggufs_parse():
    files = sorted(glob.glob(os.path.join(VOCAB_DIR, "*.gguf")))
    assert len(files) == 6, files
    for path in files:
        with mf.GGUFFile(path) as g:
            assert not g.problems, (path, g.problems)
            assert g.version == 3 and g.alignment == 32 and len(g.tensors) == 0
            # the key/value section must end exactly where the file does (vocab-only files
            # have no padding and no data)
            assert g.header_end == g.file_size, (path, g.header_end, g.file_size)
            toks = g.kv("tokenizer.ggml.tokens")
            assert toks.type == mf.VT_ARRAY and toks.value.elem_type == mf.VT_STRING
            n = len(toks.value)
            tt = g.kv("tokenizer.ggml.token_type").value
            assert tt.elem_type == mf.VT_INT32 and len(tt) == n
            assert set(np.unique(tt.np)) <= {1, 2, 3, 4, 5, 6}
            if g.has("tokenizer.ggml.scores"):
                sc = g.kv("tokenizer.ggml.scores").value
                assert sc.elem_type == mf.VT_FLOAT32 and len(sc) == n
            arch = g.get("general.architecture")
            if g.has(f"{arch}.vocab_size"):
                assert g.get(f"{arch}.vocab_size") == n
            for kv in g.kvs:
                if kv.key.startswith("tokenizer.ggml.") and kv.key.endswith("_token_id"):
                    assert kv.type == mf.VT_UINT32 and kv.value < n, (path, kv.key, kv.value)
            model = g.get("tokenizer.ggml.model")
            if model == "gpt2":
                merges = g.get("tokenizer.ggml.merges")
                assert merges and all(len(m.split(" ")) == 2 for m in merges)
            if model == "llama":
                # SentencePiece vocabularies carry the 256 byte-fallback pieces
                assert int(np.sum(tt.np == mf.TOKEN_BYTE)) == 256
                assert g.get("tokenizer.ggml.tokens")[:3] == ["<unk>", "<s>", "</s>"]
            # every id in llama.cpp's expected tokenizations must exist in the vocabulary
            with open(path + ".out") as f:
                ids = [int(x) for line in f for x in line.split()]
            assert ids and max(ids) < n and min(ids) >= 0, path
            # the description is self-consistent and survives a JSON round trip
            d = mf.describe_gguf(g)
            assert d["gguf"]["data_offset"] % 32 == 0
            assert modeldump.compare(d, json.loads(json.dumps(d))) == []


@test
def vocab_known_values():
    with mf.GGUFFile(os.path.join(VOCAB_DIR, "ggml-vocab-gpt-2.gguf")) as g:
        assert g.get("tokenizer.ggml.pre") == "gpt-2"
        toks = g.get("tokenizer.ggml.tokens")
        assert len(toks) == 50257 and toks[50256] == "<|endoftext|>" and toks[198] == "\u010a"
        assert g.get("tokenizer.ggml.bos_token_id") == 50256
        assert np.float32(g.get("gpt2.attention.layer_norm_epsilon")) == np.float32(1e-5)
    with mf.GGUFFile(os.path.join(VOCAB_DIR, "ggml-vocab-phi-3.gguf")) as g:
        assert g.get("tokenizer.chat_template").startswith("{{ bos_token }}")
        assert g.kv("general.quantization_version").value == 2


@test
def gpt2_safetensors_parses():
    path = os.path.join(GPT2, "model.safetensors")
    with mf.SafetensorsFile(path) as s:
        assert not s.problems, s.problems
        assert s.metadata == {"format": "pt"}
        assert len(s.tensors) == 5 * 12 + 4
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        assert [t.name for t in s.tensors] == [k for k in header if k != "__metadata__"]
        w = s.tensor_array("transformer.h.0.attn.c_attn.weight")
        assert w.shape == (32, 96) and w.dtype == np.float32 and np.isfinite(w).all()
        assert s.data_start + sum(t.nbytes for t in s.tensors) == os.path.getsize(path)
        d = mf.describe_safetensors(s)
        offs = [t["offset"] for t in d["tensors"]]
        assert offs == sorted(offs) and offs[0] == 0
    folder = mf.SafetensorsFolder(GPT2)
    assert not folder.problems and len(folder.names()) == 64
    folder.close()


@test
def llama2c_reader():
    import llama2c
    cfg, w = llama2c.read_checkpoint(CKPT)
    assert (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len) == \
        (64, 172, 5, 8, 4, 512, 512)
    assert cfg.shared_classifier and cfg.kv_dim == 32 and w["wk"].shape == (5, 32, 64)
    pieces, scores = llama2c.read_tokenizer(TOK, 512)
    texts, types = llama2c.llama_vocab(pieces)
    assert texts[:3] == [b"<unk>", b"<s>", b"</s>"] and types[:3] == [2, 3, 3]
    assert texts[3] == b"<0x00>" and texts[258] == b"<0xFF>" and types[3:259] == [6] * 256
    assert all(t == 1 for t in types[259:])
    assert any(t.startswith("\u2581".encode()) for t in texts) and not any(b" " in t for t in texts)
    # freq_cis tables must be the standard RoPE tables: a sanity check of the offsets
    hs = cfg.head_size
    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2, dtype=np.float64) / hs))
    ang = np.outer(np.arange(cfg.seq_len), freqs)
    assert np.allclose(w["freq_cis_real"], np.cos(ang), atol=1e-5)
    assert np.allclose(w["freq_cis_imag"], np.sin(ang), atol=1e-5)


# --------------------------------------------------------------------------------------
# writer/reader round trip and modeldump comparison
# --------------------------------------------------------------------------------------

def _synthetic_gguf(path: str, version: int = 3, alignment: int = 64):
    rng = np.random.default_rng(0)
    kvs = [
        ("general.architecture", mf.VT_STRING, "llama"),
        ("t.u8", mf.VT_UINT8, 255), ("t.i8", mf.VT_INT8, -128), ("t.u16", mf.VT_UINT16, 65535),
        ("t.i16", mf.VT_INT16, -32768), ("t.u32", mf.VT_UINT32, 2**32 - 1), ("t.i32", mf.VT_INT32, -2**31),
        ("t.f32", mf.VT_FLOAT32, 1e-5), ("t.bool", mf.VT_BOOL, True), ("t.u64", mf.VT_UINT64, 2**64 - 1),
        ("t.u64small", mf.VT_UINT64, 7), ("t.i64", mf.VT_INT64, -2**63), ("t.f64", mf.VT_FLOAT64, 0.1),
        ("t.badutf8", mf.VT_STRING, b"ok\xff\xfe"),
        ("t.empty", mf.VT_STRING, ""),
        ("t.arr_f32", mf.VT_ARRAY, [0.5, -1.25, 3.0e38], mf.VT_FLOAT32),
        ("t.arr_str", mf.VT_ARRAY, ["a", "\u2581b", b"\xc3"], mf.VT_STRING),
        ("t.arr_bool", mf.VT_ARRAY, [True, False], mf.VT_BOOL),
        ("t.arr_u64", mf.VT_ARRAY, [0, 2**63, 2**64 - 1], mf.VT_UINT64),
        ("t.arr_empty", mf.VT_ARRAY, [], mf.VT_INT32),
        ("t.nested", mf.VT_ARRAY, [(mf.VT_INT32, [1, 2]), (mf.VT_STRING, ["x"]),
                                   (mf.VT_ARRAY, [(mf.VT_FLOAT64, [1.5])])], mf.VT_ARRAY),
    ]
    f32 = rng.standard_normal((3, 64)).astype(np.float32)
    tensors = [
        ("a.f32", "F32", f32, [64, 3]),
        ("b.f16", "F16", f32.astype(np.float16), [64, 3]),
        ("c.bf16", "BF16", mf.f32_to_bf16_bits(f32), [64, 3]),
        ("d.q4_0", "Q4_0", rng.integers(0, 256, 2 * 18, dtype=np.uint8).tobytes(), [64, 1]),
        ("e.q8_0", "Q8_0", rng.integers(0, 256, 4 * 34, dtype=np.uint8).tobytes(), [32, 2, 2]),
        ("f.q4_k", "Q4_K", rng.integers(0, 256, 144, dtype=np.uint8).tobytes(), [256]),
        ("g.q6_k", "Q6_K", rng.integers(0, 256, 2 * 210, dtype=np.uint8).tobytes(), [256, 2]),
        ("h.i32", "I32", np.arange(5, dtype=np.int32), [5]),
        ("i.f64", "F64", np.array([1.0, -2.0]), [2]),
        ("j.i8", "I8", np.array([-1, 2, 3], dtype=np.int8), [3, 1, 1, 1]),
    ]
    refbuild.write_gguf(path, kvs, tensors, alignment=alignment, version=version)
    return kvs, tensors, f32


@test
def gguf_roundtrip_all_types():
    with tempfile.TemporaryDirectory() as d:
        for version in (2, 3):
            path = os.path.join(d, f"s{version}.gguf")
            kvs, tensors, f32 = _synthetic_gguf(path, version)
            with mf.GGUFFile(path) as g:
                assert not g.problems, g.problems
                assert g.version == version and g.alignment == 64 and g.data_offset % 64 == 0
                assert [k.key for k in g.kvs] == [k[0] for k in kvs] + ["general.alignment"]
                assert g.get("t.u64") == 2**64 - 1 and g.get("t.i64") == -2**63 and g.get("t.bool") is True
                assert np.float32(g.get("t.f32")) == np.float32(1e-5) and g.get("t.f64") == 0.1
                assert g.get("t.badutf8") == "ok\ufffd\ufffd" and g.kv("t.badutf8").value == b"ok\xff\xfe"
                assert g.get("t.arr_str") == ["a", "\u2581b", "\ufffd"]
                assert g.get("t.nested") == [[1, 2], ["x"], [[1.5]]]
                assert g.kv("t.nested").value.items[2].items[0].elem_type == mf.VT_FLOAT64
                assert [t.name for t in g.tensors] == [t[0] for t in tensors]
                assert np.array_equal(g.tensor_array("a.f32"), f32)
                assert np.array_equal(g.tensor_array("b.f16"), f32.astype(np.float16))
                assert np.array_equal(g.tensor_array("c.bf16"), mf.bf16_bits_to_f32(mf.f32_to_bf16_bits(f32)))
                assert g.tensor_info("d.q4_0").nbytes == 36 and g.tensor_info("g.q6_k").nbytes == 420
                assert g.tensor_info("e.q8_0").np_shape == (2, 2, 32)
                assert g.tensor_array("j.i8").shape == (1, 1, 1, 3)
                assert all(t.offset % 64 == 0 for t in g.tensors)
                desc = mf.describe_gguf(g)
            meta = {e["key"]: e for e in desc["metadata"]}
            assert meta["t.u64"]["value"] == str(2**64 - 1) and meta["t.u64small"]["value"] == 7
            assert meta["t.arr_u64"]["value"] == [0, str(2**63), str(2**64 - 1)]
            assert meta["t.nested"]["value"][2] == {"elem_type": "array",
                                                    "value": [{"elem_type": "float64", "value": [1.5]}]}
            assert meta["t.arr_str"]["elem_type"] == "string"
            assert [t["type"] for t in desc["tensors"]][:6] == ["F32", "F16", "BF16", "Q4_0", "Q8_0", "Q4_K"]
            # modeldump's CLI, printing and comparing
            rc, out = run_quiet(modeldump.main, [path])
            assert rc == 0 and json.loads(out) == json.loads(json.dumps(desc))
            ours = json.loads(out)
            ours["path"] = path                                   # extra top-level keys are ignored
            meta_o = {e["key"]: e for e in ours["metadata"]}
            meta_o["t.f32"]["value"] = 1e-05                       # same float32, different spelling
            meta_o["t.u64small"]["value"] = "7"                    # integers may be strings
            for t in ours["tensors"]:
                del t["sha256"]                                    # sha256 is optional in OURS
            ours_path = os.path.join(d, "ours.json")
            with open(ours_path, "w") as f:
                json.dump(ours, f)
            rc, out = run_quiet(modeldump.main, [path, "--against", ours_path])
            assert rc == 0, out
            # each kind of difference is reported
            for mutate, needle in [
                (lambda o: o["metadata"][7].__setitem__("value", 1.1e-5), "t.f32"),
                (lambda o: o["metadata"][1].__setitem__("type", "int8"), "type"),
                (lambda o: o["metadata"].reverse(), "metadata keys differ"),
                (lambda o: o["metadata"][-2]["value"][2]["value"][0].__setitem__("value", [1.25]), "t.nested"),
                (lambda o: o["metadata"][16]["value"].__setitem__(1, "_b"), "t.arr_str"),
                (lambda o: o["tensors"][1].__setitem__("shape", [3, 64]), "shape"),
                (lambda o: o["tensors"][2].__setitem__("offset", 0), "offset"),
                (lambda o: o["tensors"][2].__setitem__("sha256", "00"), "sha256"),
                (lambda o: o["gguf"].__setitem__("data_offset", 0), "gguf.data_offset"),
                (lambda o: o.__setitem__("format", "safetensors"), "format"),
            ]:
                bad = copy.deepcopy(ours)
                mutate(bad)
                diffs = modeldump.compare(json.loads(json.dumps(desc)), bad)
                assert any(needle in x for x in diffs), (needle, diffs)


@test
def gguf_rejects_broken_files():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.gguf")
        _synthetic_gguf(path)
        data = open(path, "rb").read()
        for name, blob, needle in [
            ("magic", b"GGUX" + data[4:], "magic"),
            ("truncated", data[:200], "truncated"),
            ("version", data[:4] + struct.pack("<I", 9) + data[8:], "version"),
        ]:
            p = os.path.join(d, name)
            open(p, "wb").write(blob)
            try:
                mf.GGUFFile(p)
            except mf.FormatError as e:
                assert needle in str(e), (name, e)
            else:
                raise AssertionError(f"{name}: accepted")
        # tensor data cut short is reported as a problem, not silently read
        p = os.path.join(d, "short")
        open(p, "wb").write(data[:-80])   # the last tensor is padded: cut into its data
        with mf.GGUFFile(p) as g:
            assert any("past the end" in x for x in g.problems), g.problems
        # a misaligned tensor offset
        kvs = [("general.architecture", mf.VT_STRING, "x")]
        refbuild.write_gguf(p, kvs, [("a", "F32", np.zeros(4, np.float32), [4]),
                                     ("b", "F32", np.zeros(4, np.float32), [4])])
        blob = bytearray(open(p, "rb").read())
        # offset field = after the name (u64 length + bytes), n_dims, ne[0] and type
        pos = blob.find(struct.pack("<Q", 1) + b"b") + 9 + 4 + 8 + 4
        struct.pack_into("<Q", blob, pos, 16)
        open(p, "wb").write(blob)
        with mf.GGUFFile(p) as g:
            assert any("not a multiple of the alignment" in x for x in g.problems), g.problems
        # aligned but out of order (b before a): ggml's reader refuses it
        struct.pack_into("<Q", blob, pos, 0)
        struct.pack_into("<Q", blob, blob.find(struct.pack("<Q", 1) + b"a") + 9 + 4 + 8 + 4, 32)
        open(p, "wb").write(blob)
        with mf.GGUFFile(p) as g:
            assert any("ggml's reader expects 0" in x for x in g.problems), g.problems
        # over-long tensor name
        refbuild.write_gguf(p, kvs, [("n" * 64, "F32", np.zeros(4, np.float32), [4])])
        with mf.GGUFFile(p) as g:
            assert any("at most 63" in x for x in g.problems), g.problems


@test
def big_endian_gguf():
    # gguf-py can write big-endian files: every number byte-swapped, same layout
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "be.gguf")
        body = b"GGUF" + struct.pack(">IQQ", 3, 1, 1)
        key = b"general.architecture"
        body += struct.pack(">Q", len(key)) + key + struct.pack(">I", 8) + struct.pack(">Q", 5) + b"llama"
        body += struct.pack(">Q", 1) + b"w" + struct.pack(">IQIQ", 1, 2, 0, 0)
        body += b"\0" * ((-len(body)) % 32) + np.array([1.5, -2.0], dtype=">f4").tobytes() + b"\0" * 24
        open(p, "wb").write(body)
        with mf.GGUFFile(p) as g:
            assert g.endian == "big" and not g.problems and g.get("general.architecture") == "llama"
            assert np.array_equal(g.tensor_array("w"), np.array([1.5, -2.0], np.float32))


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

@test
def safetensors_types_and_shards():
    with tempfile.TemporaryDirectory() as d:
        f32 = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
        tensors = {
            "z.bf16": ("BF16", mf.f32_to_bf16_bits(f32)),
            "a.bool": ("BOOL", np.array([1, 0, 1], dtype=np.uint8)),
            "m.i64": ("I64", np.array([[-1, 2**62]], dtype=np.int64)),
            "b.u8": ("U8", np.arange(4, dtype=np.uint8)),
            "c.f64": ("F64", np.array([0.1])),
            "scalar": ("F32", np.array(2.5, dtype=np.float32)),
            "empty": ("F16", np.zeros((0, 3), dtype=np.float16)),
        }
        p = os.path.join(d, "x.safetensors")
        refbuild.write_safetensors(p, tensors, {"format": "pt", "b": "2"})
        with mf.SafetensorsFile(p) as s:
            assert not s.problems, s.problems
            assert s.metadata == {"format": "pt", "b": "2"}
            assert np.array_equal(s.tensor_array("z.bf16"), mf.bf16_bits_to_f32(mf.f32_to_bf16_bits(f32)))
            assert s.tensor_array("a.bool").tolist() == [True, False, True]
            assert s.tensor_array("m.i64").tolist() == [[-1, 2**62]]
            assert s.tensor_array("scalar").shape == () and s.tensor_array("empty").shape == (0, 3)
            desc = mf.describe_safetensors(s)
            assert [t["name"] for t in desc["tensors"]] == list(tensors)   # written in this order
            assert desc["metadata"] == [{"key": "format", "type": "string", "value": "pt"},
                                        {"key": "b", "type": "string", "value": "2"}]
        # a hole in the byte buffer is reported
        hdr = {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}
        hb = json.dumps(hdr).encode()
        open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b"\0" * 8)
        with mf.SafetensorsFile(p) as s:
            assert any("not contiguous" in x for x in s.problems), s.problems
        # size/shape mismatch is reported
        hdr = {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
        hb = json.dumps(hdr).encode()
        open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b"\0" * 8)
        with mf.SafetensorsFile(p) as s:
            assert any("bytes for shape" in x for x in s.problems), s.problems
        # sharded folder
        sd = os.path.join(d, "sharded")
        os.makedirs(sd)
        refbuild.write_safetensors(os.path.join(sd, "model-00001-of-00002.safetensors"),
                                   {"w1": ("F32", f32)})
        refbuild.write_safetensors(os.path.join(sd, "model-00002-of-00002.safetensors"),
                                   {"w2": ("BF16", mf.f32_to_bf16_bits(f32))})
        with open(os.path.join(sd, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 72}, "weight_map": {
                "w1": "model-00001-of-00002.safetensors", "w2": "model-00002-of-00002.safetensors"}}, f)
        folder = mf.SafetensorsFolder(sd)
        assert not folder.problems and sorted(folder.names()) == ["w1", "w2"]
        assert np.array_equal(folder.tensor_array("w1"), f32)
        assert folder.info("w2").dtype == "BF16"
        folder.close()


# --------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------

@test
def bf16_rounding_matches_torch():
    import torch
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    special = np.array([0.0, -0.0, 1.0, np.inf, -np.inf, 3.4028235e38, 1e-45, -1e-40,
                        # exact halfway cases: ties to even both ways
                        np.uint32(0x3F808000).view(np.float32), np.uint32(0x3F818000).view(np.float32),
                        np.uint32(0x7F7FFFFF).view(np.float32)], dtype=np.float32)
    x = np.concatenate([x, special])
    ours = mf.f32_to_bf16_bits(x)
    nan = np.isnan(x)
    ref = torch.from_numpy(x[~nan].copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours[~nan], ref)
    assert np.isnan(mf.bf16_bits_to_f32(ours[nan])).all()
    assert mf.f32_to_bf16_bits(np.array([np.uint32(0x3F808000).view(np.float32)]))[0] == 0x3F80
    assert mf.f32_to_bf16_bits(np.array([np.uint32(0x3F818000).view(np.float32)]))[0] == 0x3F82
    # widening is exact
    b = np.arange(0, 2**16, dtype=np.uint32).astype(np.uint16)
    w = mf.bf16_bits_to_f32(b)
    finite = np.isfinite(w)
    assert np.array_equal(mf.f32_to_bf16_bits(w[finite]), b[finite])


@test
def f16_rounding_matches_torch():
    import torch
    x = np.random.default_rng(2).standard_normal(100000).astype(np.float32) * 1000
    assert np.array_equal(mf.f32_to_f16(x).view(np.uint16),
                          torch.from_numpy(x).to(torch.float16).numpy().view(np.uint16))


@test
def dequantize_simple_blocks():
    # Q8_0: d (f16) then 32 int8; value = d * q
    d = np.float16(0.5)
    q = np.arange(-16, 16, dtype=np.int8)
    raw = d.tobytes() + q.tobytes()
    assert np.array_equal(mf.dequantize("Q8_0", raw, (32,)), q.astype(np.float32) * 0.5)
    # Q4_0: element j < 16 is the low nibble of byte j, element j + 16 the high nibble; value d*(n-8)
    nib = np.arange(32) % 16
    packed = (nib[:16] | (nib[16:] << 4)).astype(np.uint8)
    raw = np.float16(2.0).tobytes() + packed.tobytes()
    assert np.array_equal(mf.dequantize("Q4_0", raw, (32,)), (nib - 8).astype(np.float32) * 2.0)


@test
def rope_permutation_direction():
    """GGUF's llama q/k rows are HF's after convert_hf_to_gguf's permute; with llama.cpp's
    interleaved RoPE they must give the same attention scores as HF's rotate-half RoPE.
    This checks the direction check_hf_export's unpermute undoes, independently of it."""
    rng = np.random.default_rng(3)
    n_head, hd, dim, pos = 4, 8, 32, 5
    wq_hf = rng.standard_normal((n_head * hd, dim))
    wk_hf = rng.standard_normal((n_head * hd, dim))
    x1, x2 = rng.standard_normal(dim), rng.standard_normal(dim)
    inv = 1.0 / 10000 ** (np.arange(0, hd, 2) / hd)

    def rope_half(v, p):       # transformers: rotate_half over (first half, second half)
        v = v.reshape(n_head, hd)
        c, s = np.cos(p * inv), np.sin(p * inv)
        a, b = v[:, :hd // 2], v[:, hd // 2:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=1)

    def rope_pairs(v, p):      # llama.cpp LLAMA_ROPE_TYPE_NORM: consecutive pairs
        v = v.reshape(n_head, hd // 2, 2)
        c, s = np.cos(p * inv), np.sin(p * inv)
        return np.stack([v[..., 0] * c - v[..., 1] * s, v[..., 0] * s + v[..., 1] * c], -1).reshape(n_head, hd)

    hf_scores = (rope_half(wq_hf @ x1, pos) * rope_half(wk_hf @ x2, 2)).sum(1)
    wq_g, wk_g = refbuild._permute(wq_hf, n_head), refbuild._permute(wk_hf, n_head)
    gg_scores = (rope_pairs(wq_g @ x1, pos) * rope_pairs(wk_g @ x2, 2)).sum(1)
    assert np.allclose(hf_scores, gg_scores)
    assert np.array_equal(check_hf_export.unpermute(wq_g, n_head), wq_hf)
    # llama2.c's own run.c rotates consecutive pairs too, hence no permutation for it
    wrong = (rope_pairs(wq_hf @ x1, pos) * rope_pairs(wk_hf @ x2, 2)).sum(1)
    assert not np.allclose(hf_scores, wrong)


# --------------------------------------------------------------------------------------
# checkers: accept correct files, reject broken ones
# --------------------------------------------------------------------------------------

def _set_kv(kvs, key, *new):
    out = [k for k in kvs if k[0] != key]
    if new:
        out.insert(next((i for i, k in enumerate(kvs) if k[0] == key), len(out)), (key,) + new)
    return out


def _set_tensor(tensors, name, fn):
    return [fn(t) if t[0] == name else t for t in tensors]


@test
def llama2c_checker():
    chk = check_llama2c_gguf.check
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.gguf")
        for ty in ("f32", "f16", "bf16"):
            refbuild.build_llama2c(CKPT, TOK, ty, p)
            expect_pass(chk, p, CKPT, TOK, ty)
        expect_fail(chk, p, CKPT, TOK, "f16", contains="type BF16, expected F16")
        refbuild.build_llama2c(CKPT, TOK, "f16", p, output_copy=True)   # llama.cpp's converter style
        expect_pass(chk, p, CKPT, TOK, "f16")

        kvs, tensors = refbuild.llama2c_contents(CKPT, TOK, "bf16")
        types = next(k for k in kvs if k[0] == "tokenizer.ggml.token_type")[2]
        texts = next(k for k in kvs if k[0] == "tokenizer.ggml.tokens")[2]

        w = refbuild.llama2c.read_checkpoint(CKPT)[1]

        def trunc_bf16(t):   # truncation instead of round-to-nearest-even
            trunc = (np.ascontiguousarray(w["wq"][0]).view(np.uint32) >> 16).astype(np.uint16)
            assert not np.array_equal(trunc, t[2])
            return t[0], t[1], trunc, t[3]
        cases = [
            (_set_kv(kvs, "llama.context_length", mf.VT_INT32, 512), "type int32, expected uint32"),
            (_set_kv(kvs, "llama.context_length", mf.VT_UINT32, 128), "llama.context_length = 128"),
            (_set_kv(kvs, "llama.attention.layer_norm_rms_epsilon", mf.VT_FLOAT64, 1e-5), "expected float32"),
            (_set_kv(kvs, "llama.rope.dimension_count"), "missing metadata key llama.rope.dimension_count"),
            (_set_kv(kvs, "llama.attention.head_count_kv", mf.VT_UINT32, 8), "head_count_kv = 8"),
            (_set_kv(kvs, "general.file_type", mf.VT_UINT32, 1), "general.file_type = 1"),
            (_set_kv(kvs, "tokenizer.ggml.token_type", mf.VT_ARRAY, [1] * 512, mf.VT_INT32), "token_type"),
            (_set_kv(kvs, "tokenizer.ggml.token_type", mf.VT_ARRAY, types, mf.VT_UINT32), "expected array of int32"),
            (_set_kv(kvs, "tokenizer.ggml.tokens", mf.VT_ARRAY,
                     [t.replace("\u2581".encode(), b" ") for t in texts], mf.VT_STRING), "pieces differ"),
            (_set_kv(kvs, "tokenizer.ggml.bos_token_id", mf.VT_INT32, 1), "bos_token_id: type int32"),
            (_set_kv(kvs, "tokenizer.ggml.scores", mf.VT_ARRAY, [0.0] * 512, mf.VT_FLOAT32), "scores"),
            (_set_kv(kvs, "general.architecture", mf.VT_STRING, "llama2c"), "general.architecture"),
        ]
        for k, needle in cases:
            refbuild.write_gguf(p, k, tensors)
            expect_fail(chk, p, CKPT, TOK, "bf16", contains=needle)
        tcases = [
            (_set_tensor(tensors, "blk.0.attn_q.weight", trunc_bf16), "blk.0.attn_q.weight"),
            (_set_tensor(tensors, "blk.1.attn_k.weight",
                         lambda t: (t[0], t[1], t[2][::-1].copy(), t[3])), "blk.1.attn_k.weight"),
            (_set_tensor(tensors, "blk.2.ffn_gate.weight",     # w3 stored where w1 belongs
                         lambda t: (t[0], t[1], mf.encode_as(w["w3"][2], "BF16"), t[3])), "blk.2.ffn_gate.weight"),
            (_set_tensor(tensors, "blk.0.attn_norm.weight",
                         lambda t: (t[0], "BF16", mf.encode_as(w["rms_att"][0], "BF16"), t[3])), "expected F32"),
            (_set_tensor(tensors, "token_embd.weight",          # stored transposed, ne swapped
                         lambda t: (t[0], t[1], np.ascontiguousarray(t[2].T), t[3][::-1])), "token_embd.weight: ne"),
            ([t for t in tensors if t[0] != "blk.4.ffn_up.weight"], "missing tensor blk.4.ffn_up.weight"),
            (tensors + [("output.weight", "BF16", mf.encode_as(w["token_embedding"] * 2, "BF16"), [64, 512])],
             "output.weight"),
            (tensors + [("rope_freqs.weight", "F32", np.ones(4, np.float32), [4])], "unexpected tensor"),
        ]
        for t, needle in tcases:
            refbuild.write_gguf(p, kvs, t)
            expect_fail(chk, p, CKPT, TOK, "bf16", contains=needle)


@test
def gpt2_checker():
    chk = check_gpt2_gguf.check
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "g.gguf")
        for ty in ("f32", "f16", "bf16"):
            refbuild.build_gpt2(GPT2, ty, p)
            expect_pass(chk, p, GPT2, ty, "gpt-2")
        kvs, tensors = refbuild.gpt2_contents(GPT2, "f16")
        # what the folder implies, spelled out (independently of hfgpt2's derivation)
        meta = {k[0]: k for k in kvs}
        assert meta["gpt2.feed_forward_length"][2] == 128 and meta["gpt2.context_length"][2] == 512
        assert meta["tokenizer.ggml.bos_token_id"][2] == 0 and meta["tokenizer.ggml.eos_token_id"][2] == 0
        assert meta["tokenizer.ggml.padding_token_id"][2] == 98      # config.json pad_token_id
        assert len(meta["tokenizer.ggml.merges"][2]) == 806 and meta["tokenizer.ggml.merges"][2][0] == "\u0120 t"
        assert meta["tokenizer.ggml.token_type"][2][:2] == [3, 1] and len(meta["tokenizer.ggml.tokens"][2]) == 1000
        names = {t[0]: t for t in tensors}
        assert names["blk.0.attn_qkv.weight"][3] == [32, 96] and names["blk.0.ffn_down.weight"][3] == [128, 32]
        assert names["position_embd.weight"][1] == "F32" and names["blk.0.attn_qkv.bias"][1] == "F32"
        assert names["token_embd.weight"][1] == "F16" and "output.weight" not in names and len(names) == 4 + 12 * 5

        st = mf.SafetensorsFile(os.path.join(GPT2, "model.safetensors"))
        raw_qkv = st.tensor_array("transformer.h.0.attn.c_attn.weight")   # [in, out], not transposed
        st.close()
        cases = [
            (_set_kv(kvs, "tokenizer.ggml.pre", mf.VT_STRING, "default"), "tokenizer.ggml.pre"),
            (_set_kv(kvs, "tokenizer.ggml.merges"), "missing metadata key tokenizer.ggml.merges"),
            (_set_kv(kvs, "gpt2.feed_forward_length", mf.VT_UINT32, 37), "feed_forward_length = 37"),
            (_set_kv(kvs, "gpt2.attention.layer_norm_epsilon", mf.VT_FLOAT32, 1e-6), "layer_norm_epsilon"),
            (_set_kv(kvs, "tokenizer.ggml.padding_token_id", mf.VT_UINT32, 0), "padding_token_id = 0"),
            (_set_kv(kvs, "general.file_type"), "missing metadata key general.file_type"),
        ]
        for k, needle in cases:
            refbuild.write_gguf(p, k, tensors)
            expect_fail(chk, p, GPT2, "f16", "gpt-2", contains=needle)
        tcases = [
            # Conv1D weight copied without the transpose but labelled with the right ne
            (_set_tensor(tensors, "blk.0.attn_qkv.weight",
                         lambda t: (t[0], t[1], mf.f32_to_f16(raw_qkv.reshape(96, 32)), t[3])), "blk.0.attn_qkv.weight"),
            (_set_tensor(tensors, "position_embd.weight",
                         lambda t: (t[0], "F16", mf.f32_to_f16(t[2]), t[3])), "position_embd.weight: type F16"),
            (_set_tensor(tensors, "blk.3.attn_output.bias",
                         lambda t: (t[0], "F16", mf.f32_to_f16(t[2]), t[3])), "blk.3.attn_output.bias"),
            ([t for t in tensors if t[0] != "output_norm.bias"], "missing tensor output_norm.bias"),
        ]
        for t, needle in tcases:
            refbuild.write_gguf(p, kvs, t)
            expect_fail(chk, p, GPT2, "f16", "gpt-2", contains=needle)
        # a tied copy of the embedding as output.weight is accepted
        emb = names["token_embd.weight"]
        refbuild.write_gguf(p, kvs, tensors + [("output.weight", emb[1], emb[2], emb[3])])
        expect_pass(chk, p, GPT2, "f16", "gpt-2")


def _rewrite_st(folder: str, fn):
    path = os.path.join(folder, "model.safetensors")
    with mf.SafetensorsFile(path) as s:
        t = {n: (s.info(n).dtype, s.tensor_array(n, bf16_as_f32=False)) for n in s.names()}
    t = fn(t)
    refbuild.write_safetensors(path, t)


@test
def hf_export_checker():
    chk = check_hf_export.check
    with tempfile.TemporaryDirectory() as d:
        for src, ty in (("llama", "f32"), ("llama", "bf16"), ("gpt2", "f16"), ("gpt2", "bf16")):
            g = os.path.join(d, f"{src}_{ty}.gguf")
            (refbuild.build_llama2c(CKPT, TOK, ty, g) if src == "llama" else refbuild.build_gpt2(GPT2, ty, g))
            out = os.path.join(d, f"out_{src}_{ty}")
            refbuild.export_hf(g, out)
            expect_pass(chk, g, out)
        # llama: q_proj left in GGUF order (no inverse permute)
        g, out = os.path.join(d, "llama_bf16.gguf"), os.path.join(d, "out_llama_bf16")
        gg = mf.GGUFFile(g)
        q0 = gg.tensor_array("blk.0.attn_q.weight", bf16_as_f32=False)
        gg.close()
        _rewrite_st(out, lambda t: {**t, "model.layers.0.self_attn.q_proj.weight": ("BF16", q0)})
        expect_fail(chk, g, out, contains="q_proj")
        refbuild.export_hf(g, out)
        # k_proj unpermuted with n_head instead of n_head_kv
        with mf.SafetensorsFile(os.path.join(out, "model.safetensors")) as s:
            k = s.tensor_array("model.layers.1.self_attn.k_proj.weight", bf16_as_f32=False)
        k_wrong = check_hf_export.unpermute(refbuild._permute(k, 4), 8)
        _rewrite_st(out, lambda t: {**t, "model.layers.1.self_attn.k_proj.weight": ("BF16", k_wrong)})
        expect_fail(chk, g, out, contains="k_proj")
        refbuild.export_hf(g, out)
        # dtype widened to F32
        _rewrite_st(out, lambda t: {**t, "model.norm.weight": ("F16", t["model.norm.weight"][1].astype(np.float16))})
        expect_fail(chk, g, out, contains="model.norm.weight: dtype F16")
        refbuild.export_hf(g, out)
        cfg_path = os.path.join(out, "config.json")
        good_cfg = json.load(open(cfg_path))
        for key, val, needle in [("num_key_value_heads", 8, "num_key_value_heads"),
                                 ("rms_norm_eps", 1e-6, "rms_norm_eps"),
                                 ("tie_word_embeddings", False, "lm_head.weight is missing"),
                                 ("max_position_embeddings", 128, "max_position_embeddings"),
                                 ("model_type", "mistral", "model_type")]:
            json.dump({**good_cfg, key: val}, open(cfg_path, "w"))
            expect_fail(chk, g, out, contains=needle)
        json.dump({k: v for k, v in good_cfg.items() if k != "rope_theta"}, open(cfg_path, "w"))
        expect_fail(chk, g, out, contains="lacks rope_theta")
        json.dump(good_cfg, open(cfg_path, "w"))
        _rewrite_st(out, lambda t: {**t, "lm_head.weight": t["model.embed_tokens.weight"]})
        expect_pass(chk, g, out)    # a tied lm_head written out anyway is harmless
        _rewrite_st(out, lambda t: {**t, "model.layers.9.mlp.up_proj.weight": t["model.norm.weight"]})
        expect_fail(chk, g, out, contains="unexpected safetensors tensor")

        # gpt2: Conv1D weight not transposed back
        g, out = os.path.join(d, "gpt2_f16.gguf"), os.path.join(d, "out_gpt2_f16")
        _rewrite_st(out, lambda t: {**t, "transformer.h.2.mlp.c_fc.weight":
                                    ("F16", np.ascontiguousarray(t["transformer.h.2.mlp.c_fc.weight"][1].T))})
        expect_fail(chk, g, out, contains="transformer.h.2.mlp.c_fc.weight: shape")
        refbuild.export_hf(g, out)
        _rewrite_st(out, lambda t: {k[len("transformer."):] if k.startswith("transformer.") else k: v
                                    for k, v in t.items()})
        expect_pass(chk, g, out)    # the un-prefixed GPT2Model naming is accepted too
        refbuild.export_hf(g, out)
        cfg_path = os.path.join(out, "config.json")
        good_cfg = json.load(open(cfg_path))
        json.dump({**good_cfg, "n_inner": 37}, open(cfg_path, "w"))
        expect_fail(chk, g, out, contains="n_inner")
        json.dump({**good_cfg, "n_positions": 1024}, open(cfg_path, "w"))
        expect_fail(chk, g, out, contains="n_positions")


def main(argv=None) -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", action="store_true", help="show each expected rejection")
    ap.add_argument("-k", default="", help="run only tests whose name contains this")
    a = ap.parse_args(argv)
    VERBOSE = a.v
    failed = 0
    for fn in TESTS:
        if a.k not in fn.__name__:
            continue
        try:
            fn()
            print(f"PASS {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
    print(f"{'all passed' if not failed else f'{failed} failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
