#!/usr/bin/env bash
# The whole test suite: C unit tests, command-line integration tests checked by
# independent Python oracles, and the oracle's own self-test.
# Usage: tests/run.sh [BUILD_DIR]   (default build/release)
# Last line: "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
BUILD=${1:-build/release}
export LLMOPS="$PWD/$BUILD/llmops"
export PY=/usr/bin/python3
export ASSETS=${LLMOPS_ASSETS:-$PWD/../shared/assets}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llmops-tests.XXXXXX")
export TMP
trap 'rm -rf "$TMP"' EXIT

passed=0 failed=0 skipped=0
count() { # count the ok/FAIL/skip lines of one suite's output (already printed)
    local out=$1
    passed=$((passed + $(grep -c '^ok' <<<"$out" || true)))
    failed=$((failed + $(grep -c '^FAIL' <<<"$out" || true)))
    skipped=$((skipped + $(grep -c '^skip' <<<"$out" || true)))
}

echo "== unit tests ($BUILD/test_unit)"
out=$("$BUILD/test_unit" 2>&1)
rc=$?
echo "$out"
count "$out"
if [ $rc -ne 0 ] && ! grep -q '^FAIL' <<<"$out"; then
    echo "FAIL unit test runner exited $rc"
    failed=$((failed + 1))
fi

for t in tests/cli/test_*.sh; do
    echo "== $t"
    out=$(bash "$t" 2>&1)
    echo "$out"
    count "$out"
done

echo "== tests/oracle/selftest.py"
if out=$($PY tests/oracle/selftest.py 2>&1); then
    echo "ok   oracle self-test"
    passed=$((passed + 1))
else
    echo "$out" | tail -20
    echo "FAIL oracle self-test"
    failed=$((failed + 1))
fi

if $PY -c 'import torch' 2>/dev/null; then if out=$($PY tests/oracle/selftest_torch_train_ref.py 2>&1); then echo "ok   torch training oracle self-test"; passed=$((passed + 1)); else echo "$out" | tail -20; echo "FAIL torch training oracle self-test"; failed=$((failed + 1)); fi; else echo "skip torch training oracle self-test (no python3-torch)"; skipped=$((skipped + 1)); fi

echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
