# Helpers for the command-line integration tests (sourced by tests/cli/test_*.sh).
# Each check prints "ok  NAME", "FAIL NAME" or "skip NAME: why"; tests/run.sh counts them.
# Expects: LLMOPS (the binary), PY (/usr/bin/python3), ASSETS (../shared/assets), TMP (scratch dir).

# check NAME CMD... — passes when CMD exits 0; on failure shows its output.
check() {
    local name=$1; shift
    local log="$TMP/check.log"
    if "$@" >"$log" 2>&1; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        sed 's/^/    /' "$log" | tail -25
    fi
}

# check_fails NAME EXPECTED_SUBSTRING CMD... — passes when CMD exits non-zero (not by a
# signal) and its stderr contains the substring: bad input must give a clear error.
check_fails() {
    local name=$1 want=$2; shift 2
    local log="$TMP/check.log" rc
    "$@" >"$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -qF -- "$want" "$log"; then
        echo "ok   $name"
    else
        echo "FAIL $name (exit $rc, wanted a message containing: $want)"
        sed 's/^/    /' "$log" | tail -10
    fi
}

skip() { echo "skip $1: $2"; }

# need_asset REL — 0 when ../shared/assets/REL exists.
need_asset() { [ -e "$ASSETS/$1" ]; }
