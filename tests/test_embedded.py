"""The embedded servers never outlive their owner: a process that started an embedded PostgreSQL
and a Tansu (as the test session and the launcher do) and is then killed with SIGKILL, with no
chance to clean up, takes both with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import psutil

from duban.embedded import postmaster_pid
from tests.conftest import ROOT, free_port

OWNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from duban.embedded import EmbeddedPostgres, start_tansu

    work = Path(sys.argv[1])
    server = EmbeddedPostgres(work / "pg")
    broker = start_tansu(sys.argv[2], work / "tansu.log")
    print(broker.pid, flush=True)
    time.sleep(600)
""")


def test_a_killed_owner_takes_its_postgresql_and_tansu_with_it(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path), f"127.0.0.1:{free_port()}"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        tansu = psutil.Process(int(owner.stdout.readline()))
        postmaster = psutil.Process(postmaster_pid(tmp_path / "pg"))
        watchdog = next(p for p in psutil.Process(owner.pid).children() if "duban.embedded" in p.cmdline())
        assert postmaster.is_running() and tansu.is_running()

        owner.send_signal(signal.SIGKILL)
        _gone, alive = psutil.wait_procs([postmaster, tansu, watchdog], timeout=20)
        assert alive == [], [p.cmdline() for p in alive]
        assert postmaster_pid(tmp_path / "pg") is None, "PostgreSQL shut down cleanly and removed its pid file"
    finally:
        owner.kill()
        owner.wait()
