"""Response heads in the order nginx push-stream writes them."""

from __future__ import annotations

import time
import zlib
from email.utils import formatdate
from typing import TYPE_CHECKING

from fastpush import __version__

if TYPE_CHECKING:
    from fastpush.config import Settings
    from fastpush.http.protocol import Request

SERVER = b"Server: fastpush/" + __version__.encode() + b"\r\n"
# push-stream marks every response as not cacheable with these two.
NO_CACHE = (
    b"Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\n"
)

REASONS = {
    101: b"Switching Protocols",
    200: b"OK",
    204: b"No Content",
    304: b"Not Modified",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Not Allowed",
    408: b"Request Time-out",
    411: b"Length Required",
    413: b"Request Entity Too Large",
    414: b"Request-URI Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Temporarily Unavailable",
    505: b"HTTP Version Not Supported",
}

_date_cache: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n")
    return _date_cache[1]


def head(
    status: int,
    *,
    content_type: bytes | None = None,
    length: int | None = None,
    chunked: bool = False,
    keep_alive: bool = True,
    last_modified: bytes | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    no_cache: bool = True,
    early: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """Status line and headers, ending with the blank line.

    early headers go before Expires/Cache-Control (a subscriber's CORS
    headers), extra after them, in push-stream's order.
    """
    out = [
        b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown")),
        SERVER,
        date_header(),
    ]
    if content_type is not None:
        out.append(b"Content-Type: " + content_type + b"\r\n")
    # nginx's header filter order: length, Last-Modified, then chunking.
    if length is not None:
        out.append(b"Content-Length: %d\r\n" % length)
    if last_modified is not None:
        out.append(b"Last-Modified: " + last_modified + b"\r\n")
    if length is None and chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    out.append(
        b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n"
    )
    if early:
        for name, value in early:
            out.append(name + b": " + value + b"\r\n")
    if no_cache:
        out.append(NO_CACHE)
    if extra:
        for name, value in extra:
            out.append(name + b": " + value + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def error(
    status: int,
    explain: str | None = None,
    *,
    keep_alive: bool = True,
    extra: list[tuple[bytes, bytes]] | None = None,
    early: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A header-only answer, with push-stream's explanation header."""
    headers = list(extra or ())
    if explain:
        headers.append((b"X-Nginx-PushStream-Explain", explain.encode()))
    return head(status, length=0, keep_alive=keep_alive, extra=headers, early=early)


def switching_protocols(accept: bytes) -> bytes:
    """push-stream writes the 101 itself: no Server, Date or Content-*."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        + NO_CACHE
        + b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n"
        + b"Sec-WebSocket-Accept: "
        + accept
        + b"\r\n\r\n"
    )


def gzip_wanted(settings: Settings, req: Request, content_type: bytes) -> bool:
    """nginx's gzip filter rules: on, HTTP/1.1, accepted, a gzip_types type."""
    if not settings.gzip or req.http_minor == 0:
        return False
    if "gzip" not in req.headers.get("accept-encoding", ""):
        return False
    ct = content_type.split(b";")[0].strip().decode("latin-1")
    return ct == "text/html" or ct in settings.gzip_types or "*" in settings.gzip_types


def gzip_chunked(body: bytes) -> bytes:
    """body gzipped (nginx's default level 1) as one chunk and the last chunk."""
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    data = z.compress(body) + z.flush()
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


GZIP_HEADER = (b"Content-Encoding", b"gzip")
