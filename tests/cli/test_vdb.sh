# `llmops vdb`: the command-line contract. Outputs are JSON, checked with Python's json module;
# filtered results are checked against the same filter evaluated in Python over the input rows.
. "$(dirname "$0")/lib.sh"

DB="$TMP/vdb_kb"
rm -rf "$DB" "$TMP/vdb_bk" "$TMP/vdb_bk.sqlite3" "$TMP/vdb_restored"

# 200 random records, written and checked by the same Python snippet
$PY - "$TMP/vdb_rows.jsonl" <<'EOF'
import json, random, sys
random.seed(7)
words = ["alpha", "beta", "gamma", "delta", "ran", "ric", "xapp"]
with open(sys.argv[1], "w") as f:
    for i in range(200):
        md = {"n": i % 10, "grp": random.choice(["a", "b", "c"]), "w": round(random.random(), 3)}
        if i % 7 == 0: md["flag"] = bool(i % 2)
        row = {"id": f"r{i}", "embedding": [random.uniform(-1, 1) for _ in range(4)], "metadata": md}
        if i % 5: row["document"] = " ".join(random.choice(words) for _ in range(4))
        f.write(json.dumps(row) + "\n")
EOF

# json_check FILE PYTHON-EXPR — the JSON in FILE (as `r`), the input rows (as `rows`), must satisfy EXPR
json_check() {
    $PY - "$1" "$TMP/vdb_rows.jsonl" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
byid = {x["id"]: x for x in rows}
ok = eval(sys.argv[3])
if not ok:
    print("output:", json.dumps(r)[:2000])
    sys.exit(1)
EOF
}

check "vdb create" $LLMOPS vdb create "$DB" docs --dim 4 --space cosine --M 8 --ef-search 50 --metadata '{"team":"ran"}'
check_fails "vdb create refuses an existing name" "already exists" $LLMOPS vdb create "$DB" docs --dim 4
check "vdb create --get-or-create returns the existing one" $LLMOPS vdb create "$DB" docs --dim 4 --get-or-create
check_fails "vdb create checks Chroma's name rule" "collection name 'ab'" $LLMOPS vdb create "$DB" ab --dim 4
check_fails "vdb create needs --dim" "--dim N is required" $LLMOPS vdb create "$DB" other
check "vdb add (JSONL)" $LLMOPS vdb add "$DB" docs "$TMP/vdb_rows.jsonl"
check_fails "vdb add refuses existing ids" "id 'r0' already exists" $LLMOPS vdb add "$DB" docs "$TMP/vdb_rows.jsonl"

$LLMOPS vdb count "$DB" docs >"$TMP/vdb_out.json" 2>&1
check "vdb count" json_check "$TMP/vdb_out.json" 'r == {"count": 200}'
$LLMOPS vdb list "$DB" >"$TMP/vdb_out.json" 2>&1
check "vdb list shows the configuration" json_check "$TMP/vdb_out.json" \
    'len(r) == 1 and r[0]["name"] == "docs" and r[0]["dim"] == 4 and r[0]["space"] == "cosine" and r[0]["M"] == 8 and r[0]["ef_search"] == 50 and r[0]["count"] == 200 and r[0]["metadata"] == {"team": "ran"}'

# errors name FILE:LINE
printf '{"id":"x1","embedding":[1,2,3,4]}\n{"id":"x2","embedding":[1,2]}\n' >"$TMP/vdb_bad1.jsonl"
check_fails "a wrong dimension names file:line" "vdb_bad1.jsonl:2: embedding has 2 numbers" $LLMOPS vdb add "$DB" docs "$TMP/vdb_bad1.jsonl"
printf '{"id":"x1","embedding":[1,2,3,4]}\n\n{"id":"x3","embedding":[1,2,3,4],\n' >"$TMP/vdb_bad2.jsonl"
check_fails "bad JSON names file:line" "vdb_bad2.jsonl:3:" $LLMOPS vdb add "$DB" docs "$TMP/vdb_bad2.jsonl"
printf '{"id":"x1","embedding":[1,2,3,4],"metadata":{"k":[1]}}\n' >"$TMP/vdb_bad3.jsonl"
check_fails "a bad metadata value names the key" "vdb_bad3.jsonl:1: metadata.k" $LLMOPS vdb add "$DB" docs "$TMP/vdb_bad3.jsonl"
printf '{"id":"x1","vector":[1,2,3,4]}\n' >"$TMP/vdb_bad4.jsonl"
check_fails "an unknown key is refused" "unknown key 'vector'" $LLMOPS vdb add "$DB" docs "$TMP/vdb_bad4.jsonl"
$LLMOPS vdb count "$DB" docs >"$TMP/vdb_out.json" 2>&1
check "failed adds wrote nothing" json_check "$TMP/vdb_out.json" 'r["count"] == 200'

# get with filters, against Python's evaluation of the same filter
$LLMOPS vdb get "$DB" docs --where '{"$and": [{"grp": {"$in": ["a", "c"]}}, {"n": {"$gte": 4}}]}' --include metadatas >"$TMP/vdb_out.json" 2>&1
check "vdb get --where matches Python" json_check "$TMP/vdb_out.json" \
    'r["ids"] == [x["id"] for x in rows if x["metadata"]["grp"] in ("a", "c") and x["metadata"]["n"] >= 4]'
$LLMOPS vdb get "$DB" docs --where '{"flag": {"$ne": true}}' --include "" >"$TMP/vdb_out.json" 2>&1
check "vdb get \$ne matches records without the key" json_check "$TMP/vdb_out.json" \
    'r["ids"] == [x["id"] for x in rows if x["metadata"].get("flag") is not True] and list(r) == ["ids"]'
$LLMOPS vdb get "$DB" docs --where-document '{"$or": [{"$contains": "ric"}, {"$regex": "^alpha"}]}' --include documents >"$TMP/vdb_out.json" 2>&1
check "vdb get --where-document matches Python" json_check "$TMP/vdb_out.json" \
    'r["ids"] == [x["id"] for x in rows if "ric" in x.get("document", "") or x.get("document", "").startswith("alpha")]'
$LLMOPS vdb get "$DB" docs --ids r3,r1,nope --limit 1 --offset 1 --include embeddings >"$TMP/vdb_out.json" 2>&1
check "vdb get --ids --limit --offset" json_check "$TMP/vdb_out.json" \
    'r["ids"] == ["r3"] and all(abs(a - b) < 1e-6 for a, b in zip(r["embeddings"][0], byid["r3"]["embedding"]))'
check_fails "a bad filter names the JSON path" 'where.$or[1].n.$lt: expected a number' \
    $LLMOPS vdb get "$DB" docs --where '{"$or": [{"n": 1}, {"n": {"$lt": "x"}}]}'

# query: filtered k-NN returns min(k, matches), nearest first, by cosine distance
$PY -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print(json.dumps(rows[17]["embedding"]))' "$TMP/vdb_rows.jsonl" >"$TMP/vdb_q.json"
$LLMOPS vdb query "$DB" docs --embedding "$(cat "$TMP/vdb_q.json")" --k 5 >"$TMP/vdb_out.json" 2>&1
check "vdb query finds the record itself first" json_check "$TMP/vdb_out.json" \
    'r["ids"][0][0] == "r17" and abs(r["distances"][0][0]) < 1e-6 and len(r["ids"][0]) == 5 and r["distances"][0] == sorted(r["distances"][0])'
$LLMOPS vdb query "$DB" docs --embedding "$(cat "$TMP/vdb_q.json")" --k 50 --where '{"n": 3}' >"$TMP/vdb_out.json" 2>&1
check "a filtered query returns min(k, matches)" json_check "$TMP/vdb_out.json" \
    'len(r["ids"][0]) == 20 and all(byid[i]["metadata"]["n"] == 3 for i in r["ids"][0])'
$PY - "$TMP/vdb_rows.jsonl" "$TMP/vdb_out.json" >"$TMP/vdb_exact.txt" <<'EOF'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
q = rows[17]["embedding"]
def cos(a, b):
    return 1 - sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
best = sorted((cos(q, x["embedding"]), x["id"]) for x in rows if x["metadata"]["n"] == 3)
r = json.load(open(sys.argv[2]))
ok = [i for _, i in best] == r["ids"][0] and all(abs(d - e) < 1e-5 for (d, _), e in zip(best, r["distances"][0]))
print("ok" if ok else "mismatch")
EOF
check "filtered query equals exact cosine search in Python" grep -qx ok "$TMP/vdb_exact.txt"
head -3 "$TMP/vdb_rows.jsonl" >"$TMP/vdb_queries.jsonl"
$LLMOPS vdb query "$DB" docs --queries "$TMP/vdb_queries.jsonl" --k 2 --include distances >"$TMP/vdb_out.json" 2>&1
check "vdb query --queries: one list per query vector" json_check "$TMP/vdb_out.json" \
    '[x[0] for x in r["ids"]] == ["r0", "r1", "r2"] and list(r) == ["ids", "distances"]'
$LLMOPS vdb query "$DB" docs --text "ric xapp" --k 5 >"$TMP/vdb_out.json" 2>&1
check "vdb query --text: BM25 keyword search" json_check "$TMP/vdb_out.json" \
    'len(r["ids"]) == 5 and r["scores"] == sorted(r["scores"], reverse=True) and all(("ric" in d or "xapp" in d) for d in r["documents"])'
$LLMOPS vdb query "$DB" docs --text "ric" --embedding "$(cat "$TMP/vdb_q.json")" --k 5 --rrf-k 10 --mmr 0.7 >"$TMP/vdb_out.json" 2>&1
check "vdb query --text --embedding: hybrid with MMR" json_check "$TMP/vdb_out.json" \
    'len(r["ids"]) == 5 and len(set(r["ids"])) == 5 and "distances" in r and "scores" in r'
check_fails "vdb query needs a query" "give --embedding JSON" $LLMOPS vdb query "$DB" docs
check_fails "vdb query checks the dimension" "--embedding: embedding has 2 numbers" $LLMOPS vdb query "$DB" docs --embedding '[1,2]'

# update / upsert / delete
printf '{"id":"r1","metadata":{"grp":null,"new":"yes"},"document":"now about ric"}\n' >"$TMP/vdb_up.jsonl"
check "vdb update (partial)" $LLMOPS vdb update "$DB" docs "$TMP/vdb_up.jsonl"
$LLMOPS vdb get "$DB" docs --ids r1 --include metadatas,documents,embeddings >"$TMP/vdb_out.json" 2>&1
check "update merged the metadata and kept the embedding" json_check "$TMP/vdb_out.json" \
    '"grp" not in r["metadatas"][0] and r["metadatas"][0]["new"] == "yes" and r["documents"] == ["now about ric"] and all(abs(a - b) < 1e-6 for a, b in zip(r["embeddings"][0], byid["r1"]["embedding"]))'
printf '{"id":"zz","metadata":{"a":1}}\n' >"$TMP/vdb_up2.jsonl"
check_fails "vdb update of a missing id" "'zz' does not exist" $LLMOPS vdb update "$DB" docs "$TMP/vdb_up2.jsonl"
printf '{"id":"r2","embedding":[0,0,0,1]}\n{"id":"new1","embedding":[1,0,0,0],"document":"fresh"}\n' >"$TMP/vdb_ups.jsonl"
check "vdb upsert" $LLMOPS vdb upsert "$DB" docs "$TMP/vdb_ups.jsonl"
$LLMOPS vdb delete "$DB" docs --where '{"grp": "b"}' >"$TMP/vdb_out.json" 2>&1
check "vdb delete --where" json_check "$TMP/vdb_out.json" \
    'r["deleted"] == sum(1 for x in rows if x["metadata"]["grp"] == "b" and x["id"] != "r1")'
check_fails "vdb delete needs a condition" "give --ids, --where or --where-document" $LLMOPS vdb delete "$DB" docs
$LLMOPS vdb get "$DB" docs --include "" >"$TMP/vdb_before.json"

# maintenance
check "vdb compact" $LLMOPS vdb compact "$DB" docs
check "vdb backup to a directory" $LLMOPS vdb backup "$DB" "$TMP/vdb_bk"
check "vdb backup to one file" $LLMOPS vdb backup "$DB" "$TMP/vdb_bk.sqlite3" --file
check "vdb delete-collection" $LLMOPS vdb delete-collection "$DB" docs
check_fails "the collection is gone" "no collection named 'docs'" $LLMOPS vdb count "$DB" docs
check "vdb restore from the file" $LLMOPS vdb restore "$TMP/vdb_bk.sqlite3" "$DB"
$LLMOPS vdb get "$DB" docs --include "" >"$TMP/vdb_after.json"
check "restore brings back exactly the backed-up records" cmp "$TMP/vdb_before.json" "$TMP/vdb_after.json"
$LLMOPS vdb get "$TMP/vdb_bk" docs --include "" >"$TMP/vdb_after2.json"
check "a directory backup opens as a database" cmp "$TMP/vdb_before.json" "$TMP/vdb_after2.json"
check "vdb restore from a directory into a new place" $LLMOPS vdb restore "$TMP/vdb_bk" "$TMP/vdb_restored"
check_fails "vdb restore of a missing backup" "no such backup" $LLMOPS vdb restore "$TMP/nothing.sqlite3" "$DB"
check_fails "an unknown subcommand" "unknown subcommand 'frobnicate'" $LLMOPS vdb frobnicate
check "vdb --help" $LLMOPS vdb --help

# bench on a tiny dataset in the ann harness layout (exact ground truth from Python)
$PY - "$TMP/vdb_ds.bin" "$TMP/vdb_gt.bin" <<'EOF'
import random, struct, sys, math
random.seed(3)
n, dim, nq, k = 500, 16, 20, 10
def unit(v):
    s = math.sqrt(sum(x * x for x in v)); return [x / s for x in v]
base = [unit([random.gauss(0, 1) for _ in range(dim)]) for _ in range(n)]
qs = [unit([random.gauss(0, 1) for _ in range(dim)]) for _ in range(nq)]
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<3i", n, dim, nq))
    for v in base + qs: f.write(struct.pack(f"<{dim}f", *v))
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<2i", nq, k))
    for q in qs:
        best = sorted(range(n), key=lambda i: -sum(a * b for a, b in zip(q, base[i])))[:k]
        f.write(struct.pack(f"<{k}i", *best))
EOF
$LLMOPS vdb bench --ds "$TMP/vdb_ds.bin" --gt "$TMP/vdb_gt.bin" --efs 16,64 --reps 1 >"$TMP/vdb_bench.txt" 2>&1
check "vdb bench runs and reports recall" grep -qi "recall" "$TMP/vdb_bench.txt"
check_fails "vdb bench needs --ds" "--ds FILE is required" $LLMOPS vdb bench
