#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package-lock.json,
# with the Node.js 22 it needs from the `node` npm package) against make-budget-mcp over streamable HTTP.
#
# Builds the binary as `cargo test` builds it (`cargo test --locked --no-run --test integration`, honouring
# CARGO_TARGET_DIR; see step 2), starts it with --no-auth on a
# free loopback port against a temporary SQLite database, runs every active server scenario, and compares
# the outcome with expected-failures.yml (the suite's own baseline format; each entry says why it fails).
# Exits non-zero on an unexpected failure or on an unexpected pass (a stale baseline entry). The server is
# always stopped. Quiet except for the summary; the full log is kept when something went wrong.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/mbm-conformance.XXXXXX")"
server_pid=""
keep_log=0

cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$keep_log" = 1 ]; then
        echo "conformance: logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
fail() { keep_log=1; echo "conformance: $*" >&2; exit 1; }

# 1. The suite and its Node.js, exactly as locked.
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1) || {
    cat "$work/npm.log" >&2; fail "npm ci failed"; }
node22="$here/node_modules/.bin/node"
"$node22" --version | grep -q '^v22\.' || fail "node_modules/.bin/node is not Node.js 22"

# 2. The server binary, built as `cargo test` builds it for the integration tests: with the features the
#    dev-dependencies add (tokio, rmcp, reqwest, uuid), so after `cargo test` this builds nothing. A plain
#    `cargo build --bin` resolves those features without the dev-dependencies and compiles most of the
#    dependency tree, the library and the binary a second time. The code served is the same.
(cd "$root" && cargo test --locked --quiet --no-run --test integration) || fail "cargo build failed"
target_dir="${CARGO_TARGET_DIR:-$(cd "$root" && cargo metadata --format-version 1 --no-deps \
    | "$node22" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
bin="$target_dir/debug/make-budget-mcp"
[ -x "$bin" ] || fail "no binary at $bin"

# 3. Start it on a free loopback port (port 0: the kernel picks; the server prints the address).
export MBM_DATABASE_URL="sqlite://$work/conformance.db"
export MBM_LOG="warn"
"$bin" migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; fail "migrate failed"; }
"$bin" serve --transport http --no-auth --listen 127.0.0.1:0 --toolsets all >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 1 100); do
    url="$(grep -o 'http://127\.0\.0\.1:[0-9]*/mcp' "$work/server.log" | head -1 || true)"
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; fail "the server exited at start"; }
    sleep 0.1
done
[ -n "$url" ] || { cat "$work/server.log" >&2; fail "the server did not announce its address"; }

# 4. Every active server scenario, judged against the baseline.
set +e
(cd "$work" && "$node22" "$here/node_modules/@modelcontextprotocol/conformance/dist/index.js" server \
    --url "$url" --expected-failures "$here/expected-failures.yml" -o "$work/results" >"$work/suite.log" 2>&1)
status=$?
set -e
# The suite's summary: one line per scenario, the totals and the baseline verdict.
awk '/^[✓✗] /{on=1} on' "$work/suite.log"
if [ "$status" -ne 0 ]; then
    fail "unexpected conformance results (exit $status); full output: $work/suite.log"
fi
