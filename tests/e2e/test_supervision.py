"""The launcher supervises: a service that dies is reported and started again, the embedded broker
dying stops everything with a reason, and nothing outlives a launcher killed with SIGKILL."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from duban.embedded import postmaster_pid
from tests.e2e.conftest import Launcher, wait_until


@pytest.fixture
def launcher(tmp_path):
    running = Launcher(tmp_path / "run").ready()
    yield running
    running.stop()


def family(launcher: Launcher) -> list[psutil.Process]:
    """Every process the launcher started, and the embedded PostgreSQL, which pg_ctl detached from it."""
    postmaster = psutil.Process(postmaster_pid(Path(launcher.run_dir) / "pg"))
    return psutil.Process(launcher.process.pid).children(recursive=True) + [postmaster]


def child_named(launcher: Launcher, module: str) -> psutil.Process:
    return next(p for p in psutil.Process(launcher.process.pid).children() if module in " ".join(p.cmdline()))


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_service_that_dies_is_reported_and_restarted(launcher):
    tracker = child_named(launcher, "services.tracker")
    tracker.kill()
    launcher.wait_for_output("restarting tracker in 1 s", 10)
    assert "tracker exited (killed by SIGKILL); the end of its log" in launcher.output()
    launcher.wait_for_output("tracker restarted", 10)
    assert child_named(launcher, "services.tracker").pid != tracker.pid
    wait_until(lambda: ready(launcher.urls["tracker"]), 90, "the restarted tracker to be ready")
    assert launcher.process.poll() is None

    again = child_named(launcher, "services.tracker")  # dying again at once waits twice as long
    again.kill()
    launcher.wait_for_output("restarting tracker in 2 s (exit 2 in a row)", 10)


def test_the_embedded_broker_dying_stops_everything_with_the_reason(launcher):
    everything = family(launcher)
    child_named(launcher, "tansu").kill()
    assert launcher.process.wait(90) == 1
    launcher.reader.join(10)
    assert "the embedded broker (Tansu) exited (killed by SIGKILL)" in launcher.output()
    assert "DUBAN_KAFKA_BOOTSTRAP" in launcher.output()
    _gone, alive = psutil.wait_procs(everything, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]


def test_nothing_outlives_a_launcher_killed_with_sigkill(launcher):
    everything = family(launcher)
    assert {"tansu", "services.intake", "services.tracker", "services.metrics", "services.notifier", "postgres",
            "duban.embedded"} <= {word for p in everything for word in _words(p)}
    launcher.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _gone, alive = psutil.wait_procs(everything, timeout=30)
    assert alive == [], [p.cmdline() for p in alive]
    print(f"every process gone {time.monotonic() - killed:.1f} s after the launcher's SIGKILL")


def _words(process: psutil.Process) -> set[str]:
    return {Path(part).name.split("-v")[0] for part in process.cmdline()}


def test_the_embedded_postgresql_dying_is_reported_and_it_is_started_again(launcher):
    psutil.Process(postmaster_pid(Path(launcher.run_dir) / "pg")).kill()
    launcher.wait_for_output("the embedded PostgreSQL exited", 10)
    launcher.wait_for_output("PostgreSQL restarted", 60)
    wait_until(lambda: all(ready(url) for url in launcher.urls.values()), 90, "every service to be ready again")
    assert launcher.process.poll() is None
