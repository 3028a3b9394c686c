"""Independent readers for llama2.c's legacy checkpoint and tokenizer files, and the
GGUF contents llama.cpp expects for them (shared by check_llama2c_gguf.py and refbuild.py).

Checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len);
vocab_size > 0 means the classifier shares the token embedding, < 0 that a separate wcls
follows.  Then float32 arrays in this order: token_embedding (vocab, dim), rms_att (L, dim),
wq (L, dim, dim), wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
freq_cis_real (seq_len, head_size/2), freq_cis_imag (seq_len, head_size/2), [wcls (vocab, dim)].

Tokenizer: int32 max_token_length, then per token float32 score, int32 length, bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np


@dataclass
class Llama2cConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int      # absolute value
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads


def read_checkpoint(path: str) -> tuple[Llama2cConfig, dict[str, np.ndarray]]:
    """Returns the config and the weights as row-major float32 arrays, keyed by llama2.c name."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 28:
        raise ValueError("checkpoint shorter than its header")
    dim, hidden, L, nh, nkv, vocab, seq = struct.unpack_from("<7i", data, 0)
    if nkv <= 0:
        nkv = nh   # llama2.c treats a missing kv head count as multi-head attention
    cfg = Llama2cConfig(dim, hidden, L, nh, nkv, abs(vocab), seq, vocab > 0)
    if min(dim, hidden, L, nh, cfg.vocab_size, seq) <= 0 or dim % nh or nh % nkv:
        raise ValueError(f"implausible llama2.c header {cfg}")
    hs, kv = cfg.head_size, cfg.kv_dim
    shapes = [
        ("token_embedding", (cfg.vocab_size, dim)),
        ("rms_att", (L, dim)),
        ("wq", (L, dim, dim)),
        ("wk", (L, kv, dim)),
        ("wv", (L, kv, dim)),
        ("wo", (L, dim, dim)),
        ("rms_ffn", (L, dim)),
        ("w1", (L, hidden, dim)),
        ("w2", (L, dim, hidden)),
        ("w3", (L, hidden, dim)),
        ("rms_final", (dim,)),
        ("freq_cis_real", (seq, hs // 2)),
        ("freq_cis_imag", (seq, hs // 2)),
    ]
    if not cfg.shared_classifier:
        shapes.append(("wcls", (cfg.vocab_size, dim)))
    pos = 28
    w = {}
    for name, shp in shapes:
        n = int(np.prod(shp))
        if pos + 4 * n > len(data):
            raise ValueError(f"checkpoint truncated in {name}")
        w[name] = np.frombuffer(data, dtype="<f4", count=n, offset=pos).astype(np.float32).reshape(shp)
        pos += 4 * n
    if pos != len(data):
        raise ValueError(f"checkpoint has {len(data) - pos} trailing bytes (wrong header?)")
    return cfg, w


def read_tokenizer(path: str, n_vocab: int) -> tuple[list[bytes], np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    pos = 4  # max_token_length, unused
    pieces, scores = [], []
    for i in range(n_vocab):
        if pos + 8 > len(data):
            raise ValueError(f"tokenizer truncated at token {i}")
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        if n < 0 or pos + n > len(data):
            raise ValueError(f"tokenizer token {i} has bad length {n}")
        pieces.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    return pieces, np.array(scores, dtype=np.float32)


_BYTE_PIECE = re.compile(rb"<0x[0-9A-Fa-f]{2}>")


def llama_vocab(pieces: list[bytes]) -> tuple[list[bytes], list[int]]:
    """Token texts and types as llama.cpp's convert-llama2c-to-ggml writes them.

    0 -> "<unk>" UNKNOWN(2); 1 -> "<s>" and 2 -> "</s>" CONTROL(3) (llama2.c's exporter
    wrote them as "\\n<s>\\n" / "\\n</s>\\n"); an empty piece CONTROL; "<0xNN>" BYTE(6);
    everything else NORMAL(1).  Spaces are turned back into SentencePiece's U+2581.
    """
    texts, types = [], []
    for i, p in enumerate(pieces):
        if i == 0:
            t, ty = b"<unk>", 2
        elif i == 1:
            t, ty = b"<s>", 3
        elif i == 2:
            t, ty = b"</s>", 3
        elif p == b"":
            t, ty = p, 3
        elif _BYTE_PIECE.fullmatch(p):
            t, ty = p, 6
        else:
            t, ty = p, 1
        texts.append(t.replace(b" ", "\u2581".encode()))
        types.append(ty)
    return texts, types


def expected_tensors(cfg: Llama2cConfig, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """GGUF tensor name -> row-major float32 array (GGUF ne is the reverse of .shape).

    llama2.c keeps PyTorch's [out, in] layout and RoPE's interleaved pair order, which is
    exactly what llama.cpp's "llama" architecture expects, so nothing is permuted.
    """
    t = {"token_embd.weight": w["token_embedding"], "output_norm.weight": w["rms_final"]}
    if not cfg.shared_classifier:
        t["output.weight"] = w["wcls"]
    for i in range(cfg.n_layers):
        t[f"blk.{i}.attn_norm.weight"] = w["rms_att"][i]
        t[f"blk.{i}.attn_q.weight"] = w["wq"][i]
        t[f"blk.{i}.attn_k.weight"] = w["wk"][i]
        t[f"blk.{i}.attn_v.weight"] = w["wv"][i]
        t[f"blk.{i}.attn_output.weight"] = w["wo"][i]
        t[f"blk.{i}.ffn_norm.weight"] = w["rms_ffn"][i]
        t[f"blk.{i}.ffn_gate.weight"] = w["w1"][i]
        t[f"blk.{i}.ffn_down.weight"] = w["w2"][i]
        t[f"blk.{i}.ffn_up.weight"] = w["w3"][i]
    return t
