"""Service processes for the tests, started as `duban run` starts them (`duban.embedded.spawn`: a
process group of their own, dying with the test process), asked whether they are ready, and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from duban.embedded import spawn
from tests.conftest import ROOT, free_port


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
    """`sig` (as an operator or Ctrl-C asks), then SIGKILL if the process has not ended within `timeout_s`."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class ServiceProcess:
    """`python -m <module>` (a service; the tracker unless told) with the test's environment, on a free port;
    `name` tells replicas apart in messages."""

    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    port: int = field(default_factory=free_port)
    module: str = "services.tracker"
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.module.rsplit(".", 1)[-1]

    def start(self) -> ServiceProcess:
        self.process = spawn([sys.executable, "-m", self.module], self.env | {"DUBAN_HTTP_PORT": str(self.port)},
                             self.log_path, cwd=ROOT)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until /readyz answers 200; fails at once, with the end of the log, if the process exits."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.tail()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> bool:
        """SIGTERM and wait; True when it shut down cleanly (uvicorn re-raises SIGTERM once it has)."""
        stop_process(self.process)
        return self.process.returncode in (0, -signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]
