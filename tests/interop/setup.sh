#!/usr/bin/env bash
# Install the interop suite's clients (tests/integration/interop.rs runs them): the official MCP Python SDK into
# python/.venv (exact versions in python/requirements.txt) and the official MCP TypeScript SDK into
# typescript/node_modules (exact versions in typescript/package-lock.json). Idempotent and quick when done:
# each step is skipped while its lock file is unchanged since the last install. Exits non-zero, saying
# what failed, when it cannot install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fail() { echo "interop setup: $*" >&2; exit 1; }

py="$here/python"
stamp="$py/.venv/requirements.installed"
if ! cmp -s "$py/requirements.txt" "$stamp" 2>/dev/null; then
    command -v python3 >/dev/null || fail "python3 is not on PATH"
    rm -rf "$py/.venv"
    python3 -m venv "$py/.venv" || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    if ! "$py/.venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
        -r "$py/requirements.txt" >"$py/.venv/pip.log" 2>&1; then
        cat "$py/.venv/pip.log" >&2
        rm -rf "$py/.venv"
        fail "pip install -r tests/interop/python/requirements.txt failed"
    fi
    cp "$py/requirements.txt" "$stamp"
fi
"$py/.venv/bin/python" -c 'import mcp' 2>/dev/null || { rm -f "$stamp"; fail "the venv cannot import mcp; run again"; }
echo "interop setup: MCP Python SDK $("$py/.venv/bin/python" -c 'from importlib.metadata import version; print(version("mcp"))') on $("$py/.venv/bin/python" --version)"

ts="$here/typescript"
command -v node >/dev/null || fail "node is not on PATH"
command -v npm >/dev/null || fail "npm is not on PATH"
if ! cmp -s "$ts/package-lock.json" "$ts/node_modules/.installed-lock.json" 2>/dev/null; then
    if ! (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error) >"$ts/npm.log" 2>&1; then
        cat "$ts/npm.log" >&2
        rm -f "$ts/npm.log"
        fail "npm ci in tests/interop/typescript failed"
    fi
    rm -f "$ts/npm.log"
    cp "$ts/package-lock.json" "$ts/node_modules/.installed-lock.json"
fi
echo "interop setup: MCP TypeScript SDK $(node -p "require('$ts/node_modules/@modelcontextprotocol/sdk/package.json').version") on node $(node --version)"
