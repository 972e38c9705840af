"""Start and stop real worker processes on this machine: for integration tests and the
throughput benchmark (operators use scripts/fleet.sh)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """One `celery worker` (a main process plus `concurrency` pool children)."""

    def __init__(self, name: str, env: dict[str, str], queues: Iterable[str] = ("vision", "text", "index"),
                 concurrency: int = 1, log_dir: Path | None = None) -> None:
        self.name = name
        self.queues = ",".join(queues)
        self.log_path = (log_dir or Path("/tmp")) / f"lens-worker-{name}-{os.getpid()}.log"
        self._env = {**os.environ, **env}
        self._concurrency = concurrency
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "celery", "-A", "workers.worker", "worker",
               "-Q", self.queues, "-c", str(self._concurrency), "-P", "prefork",
               "-n", f"{self.name}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
               "--without-heartbeat"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_tail()}")
            if " ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready after {timeout} s: {self.log_tail()}")

    def child_pids(self) -> list[int]:
        """The pool processes that run tasks (children of the main process)."""
        if self.proc is None:
            return []
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        except FileNotFoundError:
            return []
        return [int(p) for p in out.stdout.split()]

    def stop(self, timeout: float = 10.0) -> None:
        """Warm shutdown, then SIGKILL the whole process group if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class RedisServer:
    """A private redis-server on its own port (never the machine's shared one)."""

    def __init__(self, port: int, work_dir: Path) -> None:
        self.port = port
        self.work_dir = work_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def stop_process(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within grace_s (a server started by tests or
    benches must never outlive them)."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_healthy(base_url: str, proc: subprocess.Popen, timeout: float = 90.0,
                       log_path: Path | None = None) -> None:
    """Poll `GET {base_url}/healthz` until it answers 200. Raises RuntimeError, with the log's
    tail when there is one, if the server process exits first or `timeout` seconds pass."""
    import urllib.error
    import urllib.request

    def tail() -> str:
        return log_path.read_text(errors="replace")[-2000:] if log_path and log_path.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {tail()}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer /healthz within {timeout:.0f} s: {tail()}")
