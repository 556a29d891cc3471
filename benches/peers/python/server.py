"""Benchmark peer ONLY (benches/peers.rs): the trivial read tool `whoami` on Python FastMCP, over streamable
HTTP with FastMCP's defaults (stateful sessions) or over stdio.

    python server.py stdio
    python server.py http <port>
"""

import sys

from fastmcp import FastMCP

MODE = sys.argv[1] if len(sys.argv) > 1 else ""
mcp = FastMCP("peer-python")


@mcp.tool(annotations={"readOnlyHint": True})
def whoami() -> dict:
    """Who the caller is"""
    return {
        "subject": "bench",
        "role": "viewer",
        "tenant_id": "00000000-0000-0000-0000-000000000001",
        "tenant_name": "bench",
        "transport": MODE,
        "permissions": ["budget:read", "usage:read", "audit:read"],
    }


if __name__ == "__main__":
    if MODE == "stdio":
        mcp.run("stdio", show_banner=False)
    elif MODE == "http":
        port = int(sys.argv[2])
        mcp.run("http", show_banner=False, host="127.0.0.1", port=port, path="/mcp", log_level="warning")
    else:
        print("usage: python server.py stdio | http <port>", file=sys.stderr)
        sys.exit(2)
