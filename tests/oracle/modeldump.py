#!/usr/bin/python3
"""Print a JSON description of a GGUF or safetensors file, or compare it with another tool's.

    modeldump.py FILE                      print the description
    modeldump.py FILE --against OURS.json  compare with OURS.json; exit 0 if equal, 1 if not

Description schema (see also modelfile.describe_*):
  {"format": "gguf"|"safetensors",
   "gguf": {"version", "alignment", "data_offset"},          # gguf only; absolute offset
   "metadata": [{"key", "type", "value"[, "elem_type"]}, ...],  # file / header order
   "tensors": [{"name", "type", "shape", "offset", "nbytes", "sha256"}, ...]}
GGUF tensors are in file order with ne[] shapes and data-section-relative offsets;
safetensors tensors are in ascending data offset order with their stored shapes.
Comparison: same keys in the same order with the same types and values (float32 values
compared after rounding both sides to float32, float64 exactly), same tensors in the same
order with the same type/shape/offset/nbytes, and the same sha256 where OURS gives one.
Top-level keys OURS adds (e.g. "path") are ignored.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import modelfile  # noqa: E402

import numpy as np  # noqa: E402

MAX_DIFFS = 50


def _as_int(v):
    """Integers may arrive as JSON numbers or (uint64 above int64) decimal strings."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.lstrip("-").isdigit():
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def _scalar_equal(vtype: str, a, b) -> bool:
    if vtype == "float32":
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) or isinstance(b, bool):
            return False
        fa, fb = np.float32(a), np.float32(b)
        return bool(fa == fb or (np.isnan(fa) and np.isnan(fb)))
    if vtype == "float64":
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or isinstance(a, bool) or isinstance(b, bool):
            return False
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    if vtype == "bool":
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if vtype == "string":
        return isinstance(a, str) and isinstance(b, str) and a == b
    ia, ib = _as_int(a), _as_int(b)
    return ia is not None and ia == ib


def _compare_array(where: str, etype: str, ref, ours, diffs: list) -> None:
    if not isinstance(ours, list):
        diffs.append(f"{where}: value is not a list")
        return
    if len(ref) != len(ours):
        diffs.append(f"{where}: {len(ours)} elements, expected {len(ref)}")
    for i, (a, b) in enumerate(zip(ref, ours)):
        if len(diffs) >= MAX_DIFFS:
            return
        if etype == "array":
            if not isinstance(b, dict) or b.get("elem_type") != a["elem_type"]:
                diffs.append(f"{where}[{i}]: nested array elem_type {b.get('elem_type') if isinstance(b, dict) else b!r}, "
                             f"expected {a['elem_type']}")
                continue
            _compare_array(f"{where}[{i}]", a["elem_type"], a["value"], b.get("value"), diffs)
        elif not _scalar_equal(etype, a, b):
            diffs.append(f"{where}[{i}]: {b!r}, expected {a!r}")


def compare(ref: dict, ours: dict) -> list[str]:
    """Differences between the oracle's description (ref) and another one (ours)."""
    diffs: list[str] = []
    if ours.get("format") != ref["format"]:
        diffs.append(f"format: {ours.get('format')!r}, expected {ref['format']!r}")
        return diffs
    if ref["format"] == "gguf":
        og = ours.get("gguf")
        if not isinstance(og, dict):
            diffs.append("gguf: header block missing")
        else:
            for k in ("version", "alignment", "data_offset"):
                if og.get(k) != ref["gguf"][k]:
                    diffs.append(f"gguf.{k}: {og.get(k)!r}, expected {ref['gguf'][k]!r}")

    rm, om = ref["metadata"], ours.get("metadata")
    if not isinstance(om, list):
        diffs.append("metadata: missing or not a list")
        om = []
    if [e["key"] for e in rm] != [e.get("key") for e in om]:
        diffs.append(f"metadata keys differ: ours {[e.get('key') for e in om]} vs expected {[e['key'] for e in rm]}"[:2000])
    ours_by_key = {}
    for e in om:
        ours_by_key.setdefault(e.get("key"), e)
    for e in rm:
        if len(diffs) >= MAX_DIFFS:
            break
        o = ours_by_key.get(e["key"])
        if o is None:
            diffs.append(f"metadata '{e['key']}': missing")
            continue
        if o.get("type") != e["type"]:
            diffs.append(f"metadata '{e['key']}': type {o.get('type')!r}, expected {e['type']!r}")
            continue
        if e["type"] == "array":
            if o.get("elem_type") != e["elem_type"]:
                diffs.append(f"metadata '{e['key']}': elem_type {o.get('elem_type')!r}, expected {e['elem_type']!r}")
                continue
            _compare_array(f"metadata '{e['key']}'", e["elem_type"], e["value"], o.get("value"), diffs)
        elif not _scalar_equal(e["type"], e["value"], o.get("value")):
            diffs.append(f"metadata '{e['key']}': {o.get('value')!r}, expected {e['value']!r}")

    rt, ot = ref["tensors"], ours.get("tensors")
    if not isinstance(ot, list):
        diffs.append("tensors: missing or not a list")
        ot = []
    if [t["name"] for t in rt] != [t.get("name") for t in ot]:
        diffs.append(f"tensor names/order differ: ours {[t.get('name') for t in ot]} vs expected "
                     f"{[t['name'] for t in rt]}"[:2000])
    ours_t = {}
    for t in ot:
        ours_t.setdefault(t.get("name"), t)
    for t in rt:
        if len(diffs) >= MAX_DIFFS:
            break
        o = ours_t.get(t["name"])
        if o is None:
            diffs.append(f"tensor '{t['name']}': missing")
            continue
        for k in ("type", "shape", "offset", "nbytes"):
            if o.get(k) != t[k]:
                diffs.append(f"tensor '{t['name']}': {k} {o.get(k)!r}, expected {t[k]!r}")
        if "sha256" in o and o["sha256"] is not None and str(o["sha256"]).lower() != t.get("sha256"):
            diffs.append(f"tensor '{t['name']}': sha256 {o['sha256']}, expected {t.get('sha256')}")
    return diffs[:MAX_DIFFS]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="GGUF or safetensors file")
    ap.add_argument("--against", metavar="OURS.json", help="compare with this description instead of printing")
    ap.add_argument("--no-sha", action="store_true", help="omit sha256 (faster on big files)")
    args = ap.parse_args(argv)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # quiet when piped into head

    try:
        desc, problems = modelfile.describe(args.file, with_sha=not args.no_sha)
    except (OSError, modelfile.FormatError) as e:
        print(f"modeldump: {args.file}: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"modeldump: warning: {args.file}: {p}", file=sys.stderr)

    if not args.against:
        json.dump(desc, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0

    try:
        with open(args.against, encoding="utf-8") as f:
            ours = json.load(f)
    except (OSError, ValueError) as e:
        print(f"modeldump: cannot read {args.against}: {e}", file=sys.stderr)
        return 2
    if not isinstance(ours, dict):
        print(f"modeldump: {args.against} is not a JSON object", file=sys.stderr)
        return 1
    diffs = compare(desc, ours)
    for d in diffs:
        print(d)
    if diffs:
        print(f"{len(diffs)} difference(s){' (first 50 shown)' if len(diffs) >= MAX_DIFFS else ''}")
        return 1
    print("descriptions match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
