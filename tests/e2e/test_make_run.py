"""`make run`, the first command a newcomer types: it loads the demo county, then prints the address it really serves
(HANDOFF_PORT honoured) and a login token that works, and serves."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_browser import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.slow


def lines_of(process: subprocess.Popen) -> queue.Queue:
    found: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def test_make_run_prints_the_url_it_serves_and_a_token_that_works(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"DEMO_DIR={tmp_path}", f"VENV={VENV}"], cwd=ROOT,
        env={**os.environ, "HANDOFF_PORT": str(port)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    output: list[str] = []
    try:
        lines, deadline = lines_of(process), time.monotonic() + 600
        while not any("Token" in line for line in output):
            assert process.poll() is None or not lines.empty(), "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(output)
        assert "setuptools" not in text and "WARNING" not in text  # no installer chatter
        url = re.search(r"Dashboard:\s+(\S+)", text).group(1)
        token = re.search(r"Token:\s+(\S+)", text).group(1)
        assert url == f"http://127.0.0.1:{port}/"
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                try:
                    if client.get("health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and process.poll() is None, "".join(output)
                time.sleep(0.2)
            whoami = client.get("v1/whoami", headers={"Authorization": f"Bearer {token}"})
            assert whoami.status_code == 200 and whoami.json()["role"] == "oversight"
            assert client.get("v1/whoami", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
        # The most overdue gaps were printed before serving (rules by their codes, to fit 100 columns).
        assert "衔接缺口" in text and re.search(r"│ [RA]\d\d ", text)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
