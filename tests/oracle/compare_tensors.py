#!/usr/bin/python3
"""compare_tensors.py A.gguf B.gguf — exit 0 when both files hold the same tensors
(same names, GGML types, shapes and bytes, in any order) and the same metadata
keys with equal values, except keys named with --ignore.

Used to check round trips (HF -> GGUF -> HF -> GGUF) and rewrites with the
independent reader in modelfile.py."""
import argparse
import sys

from modelfile import GGUFFile, to_python


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ignore", action="append", default=["general.name"],
                    help="metadata key to ignore (repeatable); general.name is always ignored")
    ap.add_argument("--tensors-only", action="store_true", help="compare tensors only")
    args = ap.parse_args()
    problems = []
    with GGUFFile(args.a) as a, GGUFFile(args.b) as b:
        ta = {t.name: t for t in a.tensors}
        tb = {t.name: t for t in b.tensors}
        for name in sorted(set(ta) | set(tb)):
            if name not in tb:
                problems.append(f"tensor {name} only in {args.a}")
                continue
            if name not in ta:
                problems.append(f"tensor {name} only in {args.b}")
                continue
            x, y = ta[name], tb[name]
            if x.type != y.type or list(x.ne) != list(y.ne):
                problems.append(f"tensor {name}: {x.type_name}{x.ne} vs {y.type_name}{y.ne}")
            elif a.tensor_bytes(x) != b.tensor_bytes(y):
                problems.append(f"tensor {name}: bytes differ")
        if not args.tensors_only:
            ka = {kv.key: kv for kv in a.kvs if kv.key not in args.ignore}
            kb = {kv.key: kv for kv in b.kvs if kv.key not in args.ignore}
            for key in sorted(set(ka) | set(kb)):
                if key not in ka or key not in kb:
                    problems.append(f"key {key} only in {args.a if key in ka else args.b}")
                elif ka[key].type != kb[key].type or to_python(ka[key].value) != to_python(kb[key].value):
                    problems.append(f"key {key}: values differ")
    for p in problems[:50]:
        print(p)
    if problems:
        print(f"{len(problems)} differences")
        return 1
    print("same tensors" + ("" if args.tensors_only else " and metadata"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
