"""Independent readers for GGUF (v1/v2/v3) and safetensors files.

Written from the published format descriptions (ggml docs/gguf.md, gguf-py's
constants, the safetensors README), not from the project's C sources, so that it
can serve as a test oracle for them.  Only the standard library and numpy are
used; torch is never needed.

GGUF layout (all little-endian unless the file is a big-endian GGUF):
    magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv          (v1: u32 counts)
    n_kv x { string key | u32 value_type | value }
    n_tensors x { string name | u32 n_dims | n_dims x u64 ne | u32 ggml_type | u64 offset }
    padding to general.alignment (default 32)
    tensor data; each tensor's offset is relative to the start of this section
A string is u64 length + bytes (v1: u32 length); an array is u32 elem_type + u64 count
+ elements (arrays may nest).

safetensors layout:
    u64 LE header length N | N bytes of JSON | byte buffer
The JSON maps tensor name -> {"dtype", "shape", "data_offsets": [begin, end]}
(offsets relative to the byte buffer) plus an optional "__metadata__" str->str map.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

# --------------------------------------------------------------------------------------
# GGUF constants (gguf-py constants.py / ggml.h)
# --------------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32

# GGUF metadata value types, by id; the names are the ones modeldump prints.
VT_UINT8, VT_INT8, VT_UINT16, VT_INT16, VT_UINT32, VT_INT32 = 0, 1, 2, 3, 4, 5
VT_FLOAT32, VT_BOOL, VT_STRING, VT_ARRAY = 6, 7, 8, 9
VT_UINT64, VT_INT64, VT_FLOAT64 = 10, 11, 12

VALUE_TYPE_NAMES = {
    VT_UINT8: "uint8", VT_INT8: "int8", VT_UINT16: "uint16", VT_INT16: "int16",
    VT_UINT32: "uint32", VT_INT32: "int32", VT_FLOAT32: "float32", VT_BOOL: "bool",
    VT_STRING: "string", VT_ARRAY: "array", VT_UINT64: "uint64", VT_INT64: "int64",
    VT_FLOAT64: "float64",
}
VALUE_TYPE_IDS = {v: k for k, v in VALUE_TYPE_NAMES.items()}

# Fixed-size scalar types: struct code and numpy dtype (byte order applied later).
_SCALAR_FMT = {
    VT_UINT8: "B", VT_INT8: "b", VT_UINT16: "H", VT_INT16: "h", VT_UINT32: "I",
    VT_INT32: "i", VT_FLOAT32: "f", VT_BOOL: "B", VT_UINT64: "Q", VT_INT64: "q",
    VT_FLOAT64: "d",
}

# GGML tensor types: id -> (name as gguf-py spells it, block size, bytes per block).
# From gguf-py GGML_QUANT_SIZES (QK_K = 256).
QK_K = 256
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 2 + 16),
    3: ("Q4_1", 32, 2 + 2 + 16),
    6: ("Q5_0", 32, 2 + 4 + 16),
    7: ("Q5_1", 32, 2 + 2 + 4 + 16),
    8: ("Q8_0", 32, 2 + 32),
    9: ("Q8_1", 32, 4 + 4 + 32),
    10: ("Q2_K", 256, 2 + 2 + QK_K // 16 + QK_K // 4),
    11: ("Q3_K", 256, 2 + QK_K // 4 + QK_K // 8 + 12),
    12: ("Q4_K", 256, 2 + 2 + QK_K // 2 + 12),
    13: ("Q5_K", 256, 2 + 2 + QK_K // 2 + QK_K // 8 + 12),
    14: ("Q6_K", 256, 2 + QK_K // 2 + QK_K // 4 + QK_K // 16),
    15: ("Q8_K", 256, 4 + QK_K + QK_K // 8),
    16: ("IQ2_XXS", 256, 2 + QK_K // 4),
    17: ("IQ2_XS", 256, 2 + QK_K // 4 + QK_K // 32),
    18: ("IQ3_XXS", 256, 2 + QK_K // 4 + QK_K // 8),
    19: ("IQ1_S", 256, 2 + QK_K // 8 + QK_K // 16),
    20: ("IQ4_NL", 32, 2 + 16),
    21: ("IQ3_S", 256, 2 + QK_K // 4 + QK_K // 8 + QK_K // 32 + 4),
    22: ("IQ2_S", 256, 2 + QK_K // 4 + QK_K // 16),
    23: ("IQ4_XS", 256, 2 + 2 + QK_K // 2 + QK_K // 64),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, QK_K // 8 + QK_K // 16 + QK_K // 32),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 2 + 4 * 13),
    35: ("TQ2_0", 256, 2 + 64),
    39: ("MXFP4", 32, 1 + 16),
}
GGML_TYPE_IDS = {v[0]: k for k, v in GGML_TYPES.items()}

# llama.cpp's LLAMA_FTYPE values for the float outputs a converter can produce.
LLAMA_FTYPE_ALL_F32 = 0
LLAMA_FTYPE_MOSTLY_F16 = 1
LLAMA_FTYPE_MOSTLY_Q8_0 = 7
LLAMA_FTYPE_MOSTLY_BF16 = 32

# llama.cpp token types (llama_token_type / gguf.TokenType)
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL = 1, 2, 3
TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 4, 5, 6


class FormatError(Exception):
    """The file is not a well-formed GGUF / safetensors file."""


def ggml_type_name(type_id: int) -> str:
    return GGML_TYPES[type_id][0] if type_id in GGML_TYPES else f"UNKNOWN_{type_id}"


def ggml_nbytes(type_id: int, ne: Iterable[int]) -> int:
    """Bytes a tensor of this type and shape occupies (rows are whole blocks)."""
    if type_id not in GGML_TYPES:
        raise FormatError(f"unknown GGML type id {type_id}")
    _, blck, tsize = GGML_TYPES[type_id]
    ne = list(ne)
    n = 1
    for d in ne:
        n *= d
    if ne and ne[0] % blck != 0:
        raise FormatError(f"ne[0]={ne[0]} is not a multiple of the {GGML_TYPES[type_id][0]} block size {blck}")
    return n // blck * tsize


# --------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------

@dataclass
class GGUFArray:
    """An array value. items holds python scalars, bytes (strings) or nested GGUFArray.

    Numeric arrays keep a numpy copy in `np` as well, so that large float/int arrays
    (scores, token types) can be compared without Python loops.
    """
    elem_type: int
    items: list
    np: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class GGUFKV:
    key: str
    type: int          # value type id
    value: Any         # int / float / bool / bytes (string) / GGUFArray
    key_raw: bytes = b""
    offset: int = 0    # absolute file offset of this KV entry, for messages


@dataclass
class GGUFTensorInfo:
    name: str
    ne: list[int]
    type: int
    offset: int        # relative to the data section
    nbytes: int | None  # None when the type is unknown
    name_raw: bytes = b""

    @property
    def type_name(self) -> str:
        return ggml_type_name(self.type)

    @property
    def np_shape(self) -> tuple[int, ...]:
        """Row-major (numpy / PyTorch) shape: the reverse of ne."""
        return tuple(reversed(self.ne))


def decode_str(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


def to_python(value: Any) -> Any:
    """Metadata value with strings decoded (invalid UTF-8 -> U+FFFD) and arrays as lists."""
    if isinstance(value, (bytes, bytearray)):
        return decode_str(bytes(value))
    if isinstance(value, GGUFArray):
        return [to_python(v) for v in value.items]
    return value


class GGUFFile:
    """Parses the whole header eagerly; tensor data is read on demand through mmap."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fh = open(self.path, "rb")
        self.file_size = os.fstat(self._fh.fileno()).st_size
        if self.file_size == 0:
            raise FormatError("empty file")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.kvs: list[GGUFKV] = []
        self.tensors: list[GGUFTensorInfo] = []
        self.problems: list[str] = []   # non-fatal spec violations found while parsing
        self._parse()

    # context manager so scripts can close the mmap promptly
    def close(self) -> None:
        try:
            self._mm.close()
        finally:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- low level readers -----------------------------------------------------------
    def _need(self, pos: int, n: int, what: str) -> None:
        if n < 0 or pos + n > self.file_size:
            raise FormatError(f"truncated file: {what} needs {n} bytes at offset {pos}, file has {self.file_size}")

    def _unpack(self, fmt: str, what: str):
        size = struct.calcsize(self._bo + fmt)
        self._need(self._pos, size, what)
        vals = struct.unpack_from(self._bo + fmt, self._mm, self._pos)
        self._pos += size
        return vals[0] if len(vals) == 1 else vals

    def _read_len(self, what: str) -> int:
        return self._unpack("I" if self.version == 1 else "Q", what)

    def _read_string(self, what: str) -> bytes:
        n = self._read_len(what + " length")
        self._need(self._pos, n, what)
        b = bytes(self._mm[self._pos:self._pos + n])
        self._pos += n
        return b

    def _read_value(self, vtype: int, what: str, depth: int = 0):
        if vtype in _SCALAR_FMT:
            v = self._unpack(_SCALAR_FMT[vtype], what)
            if vtype == VT_BOOL:
                if v not in (0, 1):
                    self.problems.append(f"{what}: bool byte is {v}, not 0 or 1")
                return bool(v)
            return v
        if vtype == VT_STRING:
            return self._read_string(what)
        if vtype == VT_ARRAY:
            if depth > 64:
                raise FormatError(f"{what}: arrays nested too deeply")
            etype = self._unpack("I", what + " array type")
            count = self._read_len(what + " array count")
            if etype in _SCALAR_FMT:
                # fast path: one numpy view for the whole array
                dt = np.dtype(_SCALAR_FMT[etype]).newbyteorder(self._bo)
                nbytes = count * dt.itemsize
                self._need(self._pos, nbytes, what + " array data")
                arr = np.frombuffer(self._mm, dtype=dt, count=count, offset=self._pos).copy()
                self._pos += nbytes
                arr = arr.astype(arr.dtype.newbyteorder("="))
                if etype == VT_BOOL:
                    bad = np.nonzero(arr > 1)[0]
                    if bad.size:
                        self.problems.append(f"{what}: bool array element {int(bad[0])} is {int(arr[bad[0]])}")
                    items = [bool(x) for x in arr]
                    return GGUFArray(etype, items, arr.astype(bool))
                return GGUFArray(etype, arr.tolist(), arr)
            if etype == VT_STRING:
                # each string needs at least its length field: refuse absurd counts early
                self._need(self._pos, count * (4 if self.version == 1 else 8), what + " string array")
                return GGUFArray(etype, [self._read_string(f"{what}[{i}]") for i in range(count)])
            if etype == VT_ARRAY:
                return GGUFArray(etype, [self._read_value(VT_ARRAY, f"{what}[{i}]", depth + 1) for i in range(count)])
            raise FormatError(f"{what}: unknown array element type {etype}")
        raise FormatError(f"{what}: unknown value type {vtype}")

    # ---- header --------------------------------------------------------------------
    def _parse(self) -> None:
        if self.file_size < 4 or self._mm[:4] != GGUF_MAGIC:
            raise FormatError("not a GGUF file (bad magic)")
        self._pos = 4
        # A big-endian GGUF stores the version byte-swapped; detect it the way
        # gguf-py does (a little-endian read giving an implausibly large number).
        self._need(4, 4, "version")
        v_le = struct.unpack_from("<I", self._mm, 4)[0]
        self._bo = "<"
        if v_le & 0xFFFF == 0 and v_le != 0:
            self._bo = ">"
        self.endian = "little" if self._bo == "<" else "big"
        self.version = self._unpack("I", "version")
        if self.version not in (1, 2, 3):
            raise FormatError(f"unsupported GGUF version {self.version}")
        self.n_tensors = self._read_len("tensor count")
        self.n_kv = self._read_len("kv count")

        seen = set()
        for i in range(self.n_kv):
            start = self._pos
            key_raw = self._read_string(f"kv[{i}] key")
            key = decode_str(key_raw)
            vtype = self._unpack("I", f"kv[{i}] type")
            value = self._read_value(vtype, f"kv '{key}'")
            if key in seen:
                self.problems.append(f"duplicate metadata key '{key}'")
            seen.add(key)
            self.kvs.append(GGUFKV(key, vtype, value, key_raw, start))
        self._kv_index = {kv.key: kv for kv in self.kvs}

        self.alignment = GGUF_DEFAULT_ALIGNMENT
        if "general.alignment" in self._kv_index:
            kv = self._kv_index["general.alignment"]
            if kv.type != VT_UINT32:
                self.problems.append(f"general.alignment has type {VALUE_TYPE_NAMES.get(kv.type)}, expected uint32")
            if isinstance(kv.value, int) and kv.value > 0 and (kv.value & (kv.value - 1)) == 0:
                self.alignment = kv.value
            else:
                self.problems.append(f"general.alignment = {kv.value!r} is not a power of two")

        names = set()
        for i in range(self.n_tensors):
            name_raw = self._read_string(f"tensor[{i}] name")
            name = decode_str(name_raw)
            n_dims = self._unpack("I", f"tensor '{name}' n_dims")
            if n_dims > 4:
                self.problems.append(f"tensor '{name}': n_dims={n_dims} > GGML_MAX_DIMS (4)")
            if n_dims > 64:
                raise FormatError(f"tensor '{name}': absurd n_dims {n_dims}")
            ne = [self._unpack("Q", f"tensor '{name}' ne") for _ in range(n_dims)]
            ttype = self._unpack("I", f"tensor '{name}' type")
            offset = self._unpack("Q", f"tensor '{name}' offset")
            try:
                nbytes = ggml_nbytes(ttype, ne)
            except FormatError as e:
                self.problems.append(f"tensor '{name}': {e}")
                nbytes = None
            if name in names:
                self.problems.append(f"duplicate tensor name '{name}'")
            names.add(name)
            self.tensors.append(GGUFTensorInfo(name, ne, ttype, offset, nbytes, name_raw))
        self._tensor_index = {t.name: t for t in self.tensors}

        self.header_end = self._pos
        pad = (-self._pos) % self.alignment
        self.data_offset = self._pos + pad
        self._check_layout()

    def _check_layout(self) -> None:
        """Offsets aligned, inside the file, and not overlapping (what ggml's loader enforces)."""
        spans = []
        # ggml's gguf reader (gguf.cpp) insists that tensors sit back to back in the order
        # of their infos, each padded to the alignment, and that names fit GGML_MAX_NAME
        expected = 0
        for t in self.tensors:
            if len(t.name_raw) >= 64:
                self.problems.append(f"tensor '{t.name}': name is {len(t.name_raw)} bytes, ggml allows at most 63")
            if t.nbytes is not None:
                if t.offset != expected:
                    self.problems.append(f"tensor '{t.name}': offset {t.offset}, ggml's reader expects {expected} "
                                         "(tensors must be contiguous, in info order, each padded to the alignment)")
                    expected = t.offset
                expected += t.nbytes + (-t.nbytes) % self.alignment
        if self.tensors and self.data_offset + expected > self.file_size:
            self.problems.append(f"file ends at {self.file_size}, before the padded end of the data section "
                                 f"({self.data_offset + expected}); ggml pads after the last tensor too")
        for t in self.tensors:
            if t.offset % self.alignment:
                self.problems.append(f"tensor '{t.name}': offset {t.offset} is not a multiple of the alignment {self.alignment}")
            if t.nbytes is None:
                continue
            if self.data_offset + t.offset + t.nbytes > self.file_size:
                self.problems.append(
                    f"tensor '{t.name}': data [{t.offset}, {t.offset + t.nbytes}) runs past the end of the file "
                    f"(data section is {self.file_size - self.data_offset} bytes)")
            spans.append((t.offset, t.offset + t.nbytes, t.name))
        spans.sort()
        for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
            if b1 < e0:
                self.problems.append(f"tensors '{n0}' and '{n1}' overlap")

    # ---- metadata access ------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self._kv_index

    def kv(self, key: str) -> GGUFKV | None:
        return self._kv_index.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        kv = self._kv_index.get(key)
        return default if kv is None else to_python(kv.value)

    # ---- tensor access --------------------------------------------------------------
    def tensor_info(self, name: str) -> GGUFTensorInfo | None:
        return self._tensor_index.get(name)

    def tensor_bytes(self, name_or_info: str | GGUFTensorInfo) -> bytes:
        t = name_or_info if isinstance(name_or_info, GGUFTensorInfo) else self._tensor_index[name_or_info]
        if t.nbytes is None:
            raise FormatError(f"tensor '{t.name}' has an unknown type {t.type}")
        start = self.data_offset + t.offset
        if start + t.nbytes > self.file_size:
            raise FormatError(f"tensor '{t.name}' runs past the end of the file")
        return bytes(self._mm[start:start + t.nbytes])

    def tensor_array(self, name_or_info: str | GGUFTensorInfo, bf16_as_f32: bool = True) -> np.ndarray:
        """Tensor as a numpy array in row-major shape (reverse of ne).

        F32/F16/F64/I8..I64 map directly; BF16 becomes float32 (exact, by shifting the
        bits) unless bf16_as_f32 is False, in which case the raw uint16 bits come back.
        Quantized types raise: use tensor_bytes or dequantize() for those.
        """
        t = name_or_info if isinstance(name_or_info, GGUFTensorInfo) else self._tensor_index[name_or_info]
        raw = self.tensor_bytes(t)
        return raw_to_array(raw, t.type_name, t.np_shape, self._bo, bf16_as_f32)


_GGML_NP = {"F32": "f4", "F16": "f2", "F64": "f8", "I8": "i1", "I16": "i2", "I32": "i4", "I64": "i8", "BF16": "u2"}


def raw_to_array(raw: bytes, type_name: str, shape: tuple[int, ...], byteorder: str = "<",
                 bf16_as_f32: bool = True) -> np.ndarray:
    if type_name not in _GGML_NP:
        raise FormatError(f"no direct numpy view for GGML type {type_name}")
    dt = np.dtype(_GGML_NP[type_name]).newbyteorder(byteorder)
    arr = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
    if type_name == "BF16" and bf16_as_f32:
        arr = bf16_bits_to_f32(arr)
    return arr.reshape(shape)


# --------------------------------------------------------------------------------------
# float conversions
# --------------------------------------------------------------------------------------

def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32, so widening is an exact shift."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even.

    NaN handling follows ggml (ggml_compute_fp32_to_bf16) and gguf-py: keep the top
    16 bits and force the quiet bit, so a NaN never rounds into an infinity.
    """
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    is_nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan_bits = (u >> 16) | 0x40
    return np.where(is_nan, nan_bits, rounded).astype(np.uint16)


def f32_to_f16(x: np.ndarray) -> np.ndarray:
    """numpy's float16 cast rounds to nearest even, like ggml_fp32_to_fp16."""
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def dequantize(type_name: str, raw: bytes, np_shape: tuple[int, ...]) -> np.ndarray:
    """float32 values of a tensor; for the simple block formats whose dequantization
    is exact in float32 (a product of an f16 scale and a small integer)."""
    if type_name in ("F32", "F16", "BF16", "F64"):
        return raw_to_array(raw, type_name, np_shape).astype(np.float32)
    n = int(np.prod(np_shape)) if np_shape else 1
    if type_name == "Q8_0":
        blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "i1", 32)]))
        out = blocks["d"].astype(np.float32)[:, None] * blocks["qs"].astype(np.float32)
    elif type_name == "Q4_0":
        blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
        lo = (blocks["qs"] & 0x0F).astype(np.int16) - 8
        hi = (blocks["qs"] >> 4).astype(np.int16) - 8
        q = np.concatenate([lo, hi], axis=1).astype(np.float32)  # low nibbles are elements 0..15
        out = blocks["d"].astype(np.float32)[:, None] * q
    else:
        raise FormatError(f"dequantization of {type_name} is not implemented in the oracle")
    return out.reshape(-1)[:n].reshape(np_shape)


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

# dtype -> (bytes per element, numpy dtype or None when numpy has no equivalent)
SAFETENSORS_DTYPES: dict[str, tuple[int, str | None]] = {
    "F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, "<u2"),
    "I64": (8, "<i8"), "I32": (4, "<i4"), "I16": (2, "<i2"), "I8": (1, "i1"),
    "U64": (8, "<u8"), "U32": (4, "<u4"), "U16": (2, "<u2"), "U8": (1, "u1"),
    "BOOL": (1, "u1"), "F8_E4M3": (1, None), "F8_E5M2": (1, None),
}


@dataclass
class STTensorInfo:
    name: str
    dtype: str
    shape: list[int]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _no_duplicate_pairs(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise FormatError(f"duplicate key {k!r} in safetensors header")
        d[k] = v
    return d


class SafetensorsFile:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fh = open(self.path, "rb")
        self.file_size = os.fstat(self._fh.fileno()).st_size
        self.problems: list[str] = []
        if self.file_size < 8:
            raise FormatError("file too small for a safetensors header")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        n = struct.unpack_from("<Q", self._mm, 0)[0]
        if n > self.file_size - 8:
            raise FormatError(f"header length {n} exceeds the file size {self.file_size}")
        self.header_len = n
        self.data_start = 8 + n
        raw = bytes(self._mm[8:8 + n])
        if raw[:1] != b"{":
            self.problems.append("header does not start with '{'")
        try:
            header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_pairs)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"header is not valid UTF-8 JSON: {e}") from None
        if not isinstance(header, dict):
            raise FormatError("header JSON is not an object")
        self.metadata: dict[str, str] = {}
        self.tensors: list[STTensorInfo] = []
        for key, val in header.items():
            if key == "__metadata__":
                if not isinstance(val, dict):
                    raise FormatError("__metadata__ is not an object")
                for mk, mv in val.items():
                    if not isinstance(mv, str):
                        self.problems.append(f"__metadata__[{mk!r}] is not a string")
                    self.metadata[mk] = mv if isinstance(mv, str) else json.dumps(mv)
                continue
            if not isinstance(val, dict):
                raise FormatError(f"entry {key!r} is not an object")
            try:
                dtype, shape, offs = val["dtype"], val["shape"], val["data_offsets"]
            except KeyError as e:
                raise FormatError(f"tensor {key!r} lacks {e}") from None
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                raise FormatError(f"tensor {key!r}: bad shape {shape!r}")
            if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) for o in offs)):
                raise FormatError(f"tensor {key!r}: bad data_offsets {offs!r}")
            self.tensors.append(STTensorInfo(key, dtype, list(shape), offs[0], offs[1]))
        self._index = {t.name: t for t in self.tensors}
        self._validate()

    def _validate(self) -> None:
        """The buffer must be covered exactly: no holes, no overlaps, sizes matching shapes."""
        buf_len = self.file_size - self.data_start
        for t in self.tensors:
            if t.dtype not in SAFETENSORS_DTYPES:
                self.problems.append(f"tensor '{t.name}': unknown dtype {t.dtype}")
                continue
            n = 1
            for d in t.shape:
                n *= d
            if t.end < t.begin:
                self.problems.append(f"tensor '{t.name}': data_offsets end < begin")
            elif t.end - t.begin != n * SAFETENSORS_DTYPES[t.dtype][0]:
                self.problems.append(
                    f"tensor '{t.name}': {t.end - t.begin} bytes for shape {t.shape} {t.dtype}")
            if t.end > buf_len:
                self.problems.append(f"tensor '{t.name}': data runs past the end of the file")
        pos = 0
        for t in sorted(self.tensors, key=lambda t: (t.begin, t.end)):
            if t.begin != pos:
                self.problems.append(
                    f"byte buffer not contiguous at tensor '{t.name}' (begins at {t.begin}, expected {pos})")
            pos = max(pos, t.end)
        if pos != buf_len:
            self.problems.append(f"byte buffer is {buf_len} bytes but tensors cover {pos}")

    def close(self) -> None:
        try:
            self._mm.close()
        finally:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def info(self, name: str) -> STTensorInfo | None:
        return self._index.get(name)

    def tensor_bytes(self, name: str) -> bytes:
        t = self._index[name]
        a, b = self.data_start + t.begin, self.data_start + t.end
        if b > self.file_size or a > b:
            raise FormatError(f"tensor '{name}' is out of bounds")
        return bytes(self._mm[a:b])

    def tensor_array(self, name: str, bf16_as_f32: bool = True) -> np.ndarray:
        t = self._index[name]
        size, npdt = SAFETENSORS_DTYPES[t.dtype]
        if npdt is None:
            raise FormatError(f"no numpy dtype for {t.dtype}")
        arr = np.frombuffer(self.tensor_bytes(name), dtype=np.dtype(npdt)).astype(np.dtype(npdt).newbyteorder("="))
        if t.dtype == "BF16" and bf16_as_f32:
            arr = bf16_bits_to_f32(arr)
        elif t.dtype == "BOOL":
            arr = arr.astype(bool)
        return arr.reshape(t.shape)


class SafetensorsFolder:
    """A Hugging Face folder: model.safetensors, or shards listed in model.safetensors.index.json."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        self.files: dict[str, SafetensorsFile] = {}
        self.where: dict[str, str] = {}   # tensor name -> shard file name
        self.problems: list[str] = []
        index = os.path.join(self.folder, "model.safetensors.index.json")
        single = os.path.join(self.folder, "model.safetensors")
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                wm = json.load(f).get("weight_map")
            if not isinstance(wm, dict):
                raise FormatError("index has no weight_map object")
            for shard in dict.fromkeys(wm.values()):
                self.files[shard] = SafetensorsFile(os.path.join(self.folder, shard))
            for shard, sf in self.files.items():
                for name in sf.names():
                    if name in self.where:
                        self.problems.append(f"tensor '{name}' appears in two shards")
                    self.where[name] = shard
            for name, shard in wm.items():
                if self.where.get(name) != shard:
                    self.problems.append(f"weight_map says '{name}' is in {shard}, found in {self.where.get(name)}")
            for name in self.where:
                if name not in wm:
                    self.problems.append(f"tensor '{name}' is not listed in the weight_map")
        elif os.path.isfile(single):
            self.files["model.safetensors"] = SafetensorsFile(single)
            for name in self.files["model.safetensors"].names():
                self.where[name] = "model.safetensors"
        else:
            raise FormatError(f"no model.safetensors or model.safetensors.index.json in {self.folder}")
        for shard, sf in self.files.items():
            self.problems += [f"{shard}: {p}" for p in sf.problems]

    def names(self) -> list[str]:
        return list(self.where)

    def info(self, name: str) -> STTensorInfo | None:
        shard = self.where.get(name)
        return None if shard is None else self.files[shard].info(name)

    def tensor_bytes(self, name: str) -> bytes:
        return self.files[self.where[name]].tensor_bytes(name)

    def tensor_array(self, name: str, bf16_as_f32: bool = True) -> np.ndarray:
        return self.files[self.where[name]].tensor_array(name, bf16_as_f32)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


# --------------------------------------------------------------------------------------
# JSON description shared by modeldump.py and the tests
# --------------------------------------------------------------------------------------

def _json_scalar(vtype: int, v: Any) -> Any:
    if vtype == VT_STRING:
        return decode_str(v)
    if vtype == VT_UINT64 and v > 2**63 - 1:
        return str(v)   # JSON readers commonly lose precision above int64
    if vtype in (VT_FLOAT32, VT_FLOAT64):
        return float(v)
    return v


def _json_array(arr: GGUFArray) -> list:
    if arr.elem_type == VT_ARRAY:
        return [{"elem_type": VALUE_TYPE_NAMES.get(a.elem_type, str(a.elem_type)), "value": _json_array(a)}
                for a in arr.items]
    return [_json_scalar(arr.elem_type, v) for v in arr.items]


def describe_gguf(g: GGUFFile, with_sha: bool = True) -> dict:
    meta = []
    for kv in g.kvs:
        e = {"key": kv.key, "type": VALUE_TYPE_NAMES[kv.type]}
        if kv.type == VT_ARRAY:
            e["elem_type"] = VALUE_TYPE_NAMES.get(kv.value.elem_type, str(kv.value.elem_type))
            e["value"] = _json_array(kv.value)
        else:
            e["value"] = _json_scalar(kv.type, kv.value)
        meta.append(e)
    tensors = []
    for t in g.tensors:
        d = {"name": t.name, "type": t.type_name, "shape": list(t.ne), "offset": t.offset, "nbytes": t.nbytes}
        if with_sha and t.nbytes is not None:
            start = g.data_offset + t.offset
            d["sha256"] = hashlib.sha256(g._mm[start:start + t.nbytes]).hexdigest()
        tensors.append(d)
    return {"format": "gguf",
            "gguf": {"version": g.version, "alignment": g.alignment, "data_offset": g.data_offset},
            "metadata": meta, "tensors": tensors}


def describe_safetensors(s: SafetensorsFile, with_sha: bool = True) -> dict:
    meta = [{"key": k, "type": "string", "value": v} for k, v in s.metadata.items()]
    tensors = []
    for t in sorted(s.tensors, key=lambda t: (t.begin, t.end)):
        d = {"name": t.name, "type": t.dtype, "shape": list(t.shape), "offset": t.begin, "nbytes": t.nbytes}
        if with_sha:
            d["sha256"] = hashlib.sha256(s._mm[s.data_start + t.begin:s.data_start + t.end]).hexdigest()
        tensors.append(d)
    return {"format": "safetensors", "metadata": meta, "tensors": tensors}


def sniff_format(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise FormatError(f"{path}: neither GGUF nor safetensors")


def describe(path: str, with_sha: bool = True) -> tuple[dict, list[str]]:
    """(description, problems) for a GGUF or safetensors file."""
    if sniff_format(path) == "gguf":
        with GGUFFile(path) as g:
            return describe_gguf(g, with_sha), list(g.problems)
    with SafetensorsFile(path) as s:
        return describe_safetensors(s, with_sha), list(s.problems)


# --------------------------------------------------------------------------------------
# small helpers for the checkers
# --------------------------------------------------------------------------------------

class Report:
    """Collects problems; checkers print them all and exit non-zero if any."""

    def __init__(self, prefix: str = ""):
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.prefix = prefix

    def err(self, msg: str) -> None:
        self.errors.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def check(self, cond: bool, msg: str) -> bool:
        if not cond:
            self.errors.append(msg)
        return cond

    def finish(self, ok_msg: str = "OK") -> int:
        for n in self.notes:
            print(f"{self.prefix}note: {n}")
        for e in self.errors:
            print(f"{self.prefix}FAIL: {e}")
        if self.errors:
            print(f"{self.prefix}{len(self.errors)} problem(s)")
            return 1
        print(f"{self.prefix}{ok_msg}")
        return 0


def check_kv(g: GGUFFile, rep: Report, key: str, vtype: int, expected: Any = None, required: bool = True,
             elem_type: int | None = None) -> Any:
    """Check presence, GGUF type and (optionally) value of one key; returns the python value."""
    kv = g.kv(key)
    if kv is None:
        if required:
            rep.err(f"missing metadata key {key}")
        return None
    if kv.type != vtype:
        rep.err(f"{key}: type {VALUE_TYPE_NAMES.get(kv.type, kv.type)}, expected {VALUE_TYPE_NAMES[vtype]}")
        return None
    if vtype == VT_ARRAY and elem_type is not None and kv.value.elem_type != elem_type:
        rep.err(f"{key}: array of {VALUE_TYPE_NAMES.get(kv.value.elem_type)}, expected array of "
                f"{VALUE_TYPE_NAMES[elem_type]}")
        return None
    val = to_python(kv.value)
    if expected is not None:
        if vtype == VT_FLOAT32:
            ok = np.float32(val) == np.float32(expected)
        else:
            ok = val == expected
        if not ok:
            rep.err(f"{key} = {val!r}, expected {expected!r}")
    return val


def compare_values(rep: Report, what: str, got: np.ndarray, want: np.ndarray, max_report: int = 3) -> bool:
    """Bit-exact comparison (NaN payloads included) with a short diff on failure."""
    got = np.ascontiguousarray(got)
    want = np.ascontiguousarray(want)
    if got.shape != want.shape:
        rep.err(f"{what}: shape {got.shape}, expected {want.shape}")
        return False
    if got.dtype != want.dtype:
        rep.err(f"{what}: dtype {got.dtype}, expected {want.dtype}")
        return False
    gb = got.view(np.uint8).reshape(-1, got.dtype.itemsize) if got.size else got
    wb = want.view(np.uint8).reshape(-1, want.dtype.itemsize) if want.size else want
    if got.size == 0 or np.array_equal(gb, wb):
        return True
    bad = np.nonzero(np.any(gb != wb, axis=1))[0]
    flat_g, flat_w = got.reshape(-1), want.reshape(-1)
    ex = ", ".join(f"[{np.unravel_index(i, got.shape)}] {flat_g[i]!r} != {flat_w[i]!r}" for i in bad[:max_report])
    rep.err(f"{what}: {bad.size} of {got.size} elements differ, e.g. {ex}")
    return False


def open_gguf_or_die(path: str, rep: Report) -> GGUFFile | None:
    try:
        g = GGUFFile(path)
    except (OSError, FormatError) as e:
        rep.err(f"{path}: {e}")
        return None
    for p in g.problems:
        rep.err(f"{path}: {p}")
    return g


def encode_as(arr: np.ndarray, type_name: str) -> np.ndarray:
    """float32 data as a converter should store it: F32 as is, F16 by numpy's RNE cast,
    BF16 as RNE uint16 bits.  Compare with GGUFFile.tensor_array(..., bf16_as_f32=False)."""
    arr = np.asarray(arr, dtype=np.float32)
    if type_name == "F32":
        return arr
    if type_name == "F16":
        return f32_to_f16(arr)
    if type_name == "BF16":
        return f32_to_bf16_bits(arr)
    raise ValueError(f"cannot encode as {type_name}")


OUTTYPE_TO_GGML = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
OUTTYPE_TO_FTYPE = {"f32": LLAMA_FTYPE_ALL_F32, "f16": LLAMA_FTYPE_MOSTLY_F16, "bf16": LLAMA_FTYPE_MOSTLY_BF16}


def check_tensor(g: GGUFFile, rep: Report, name: str, want_f32: np.ndarray, want_type: str) -> None:
    """One GGUF tensor: present, ne = reversed numpy shape, expected type, exact data."""
    t = g.tensor_info(name)
    if t is None:
        rep.err(f"missing tensor {name}")
        return
    want_ne = list(reversed(want_f32.shape))
    if t.ne != want_ne:
        rep.err(f"{name}: ne {t.ne}, expected {want_ne}")
        return
    if t.type_name != want_type:
        rep.err(f"{name}: type {t.type_name}, expected {want_type}")
        return
    try:
        got = g.tensor_array(t, bf16_as_f32=False)
    except FormatError as e:
        rep.err(f"{name}: {e}")
        return
    compare_values(rep, name, got, encode_as(want_f32, want_type))
