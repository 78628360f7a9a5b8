"""What `make run` prints before it serves: the address `handoff serve` will listen on (from the same HANDOFF_HOST and
HANDOFF_PORT it reads) and the demo's login token, so nobody has to dig it out of a JSON file.

    python -m tools.demo_banner var/demo-token.json
"""

from __future__ import annotations

import json
import os
import sys


def url(host: str, port: str) -> str:
    """The address to open: a wildcard listen address is reached through the loopback one."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def main(token_file: str) -> int:
    with open(token_file, encoding="utf-8") as file:
        principal = json.load(file)
    address = url(os.environ.get("HANDOFF_HOST", "127.0.0.1"), os.environ.get("HANDOFF_PORT", "8000"))
    print(f"""
监督看板 Dashboard:  {address}
API docs:           {address}docs
登录令牌 Token:      {principal['token']}
                    ({principal['name']}, role {principal['role']}, region {principal['region']}; also in {token_file})
Stop with Ctrl-C.
""", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
