#!/usr/bin/env bash
# Install the benchmark peers (benches/peers.rs runs this first): the TypeScript SDK peer from npm (exact
# versions in typescript/package-lock.json) and the Python FastMCP peer from PyPI into python/.venv (exact
# versions in python/requirements.txt). Idempotent: each step is skipped when its lock is unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

ts="$here/typescript"
if ! cmp -s "$ts/package-lock.json" "$ts/node_modules/.installed-lock.json" 2>/dev/null; then
    (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$ts/package-lock.json" "$ts/node_modules/.installed-lock.json"
fi
echo "peers: TypeScript SDK $(node -p "require('$ts/node_modules/@modelcontextprotocol/sdk/package.json').version") on node $(node --version)"

py="$here/python"
stamp="$py/.venv/requirements.installed"
if ! cmp -s "$py/requirements.txt" "$stamp" 2>/dev/null; then
    rm -rf "$py/.venv"
    python3 -m venv "$py/.venv"
    "$py/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$py/requirements.txt"
    cp "$py/requirements.txt" "$stamp"
fi
echo "peers: FastMCP $("$py/.venv/bin/python" -c 'import fastmcp; print(fastmcp.__version__)') on $("$py/.venv/bin/python" --version)"
