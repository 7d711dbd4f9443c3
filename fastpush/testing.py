"""Helpers for testing against a real fastpush server over real sockets.

Used by the project's own tests and handy for applications that want to
run fastpush in theirs: start the server as a subprocess on a free
loopback port, talk raw HTTP and WebSocket to it, stop it.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = ["free_port", "ServerProcess", "RawClient", "dechunk", "strip_volatile"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`fastpush serve` in a subprocess, on a free port unless given one."""

    def __init__(
        self,
        config: str | None = None,
        *,
        port: int | None = None,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.config = config
        self.workers = workers
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp = tempfile.TemporaryDirectory(prefix="fastpush-test-")
        self.log_path = os.path.join(self.tmp.name, "server.log")

    def start(self, timeout: float = 15.0) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "fastpush",
            "serve",
            "--listen",
            f"{self.host}:{self.port}",
        ]
        if self.config is not None:
            path = os.path.join(self.tmp.name, "fastpush.toml")
            with open(path, "w") as f:
                f.write(self.config)
            args += ["--config", path]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        args += self.extra_args
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "wb")
        # cwd is a temp dir so `-m fastpush` imports the installed package,
        # not a source checkout without the compiled core.
        self.proc = subprocess.Popen(
            args, cwd=self.tmp.name, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fastpush exited with {self.proc.returncode}:\n{self.log()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fastpush did not start:\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def close(self) -> None:
        self.stop()
        self.tmp.cleanup()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.host, self.port, timeout)

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection; returns (status, headers, body)."""
        with self.client() as c:
            return c.request(method, target, body, headers)


class RawClient:
    """A blocking socket that speaks just enough HTTP/1.1 and WebSocket."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buf!r}")
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all(self) -> bytes:
        """Everything until the server closes (or the timeout)."""
        try:
            while self._fill():
                pass
        except socket.timeout:
            pass
        out, self.buf = self.buf, b""
        return out

    def read_for(self, seconds: float) -> bytes:
        """Whatever arrives within seconds."""
        old = self.sock.gettimeout()
        end = time.monotonic() + seconds
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                try:
                    if not self._fill():
                        break
                except socket.timeout:
                    break
        finally:
            self.sock.settimeout(old)
        out, self.buf = self.buf, b""
        return out

    def closed_by_peer(self, wait: float = 2.0) -> bool:
        old = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
            self.buf += data
            return data == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(old)

    def read_head(self) -> tuple[int, dict[str, str], bytes]:
        raw = self.read_until(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return status, headers, raw

    def read_chunk(self) -> bytes:
        size_line = self.read_until(b"\r\n")
        n = int(size_line.strip().split(b";")[0], 16)
        data = self.read_exactly(n + 2)[:-2]
        return data

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        self.send(build_request(method, target, body, headers))
        status, hdrs, _ = self.read_head()
        if "content-length" in hdrs:
            return status, hdrs, self.read_exactly(int(hdrs["content-length"]))
        if hdrs.get("transfer-encoding") == "chunked":
            out = b""
            while True:
                c = self.read_chunk()
                if not c:
                    return status, hdrs, out
                out += c
        return status, hdrs, b""

    # -- WebSocket -----------------------------------------------------------

    def websocket(
        self, target: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        key = base64.b64encode(os.urandom(16)).decode()
        h = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        h.update(headers or {})
        self.send(build_request("GET", target, b"", h))
        status, hdrs, _ = self.read_head()
        return status, hdrs

    def ws_send(
        self, payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True
    ) -> None:
        self.send(ws_frame(payload, opcode, fin, mask))

    def ws_recv(self) -> tuple[int, bytes]:
        """One frame from the server: (opcode, payload)."""
        b0, b1 = self.read_exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self.read_exactly(2), "big")
        elif n == 127:
            n = int.from_bytes(self.read_exactly(8), "big")
        return b0 & 0x0F, self.read_exactly(n)


def build_request(
    method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    h = {"Host": "localhost"}
    h.update(headers or {})
    if body or method in ("POST", "PUT"):
        h.setdefault("Content-Length", str(len(body)))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in h.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


def ws_frame(
    payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True
) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def dechunk(body: bytes) -> list[bytes]:
    """Split a chunked body into its chunks (the final empty one excluded)."""
    out = []
    while body:
        line, _, rest = body.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            break
        out.append(rest[:n])
        body = rest[n + 2 :]
    return out


_VOLATILE = re.compile(rb"^(Date|Server): [^\r]*\r\n", re.MULTILINE)


def strip_volatile(raw: bytes) -> bytes:
    """Drop the Date and Server headers, the only bytes that differ from
    push-stream's answers for the same request."""
    return _VOLATILE.sub(b"", raw)
