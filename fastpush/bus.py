"""The bus between workers and the sequencer (`fastpush serve --workers N`).

Every publish, from any worker, goes to one sequencer (in the supervisor
process) that stamps it with the channel's next id, the time and push-stream's
tag, stores it, and broadcasts it to every worker in one order; each worker
keeps a replica of the bounded store, so backtrack and resume answer the same
everywhere. Workers report their subscriber counts so channel information
covers all of them.

Frames are a 4-byte length and a `marshal`ed tuple: both ends are the same
Python binary (forked from one process), and marshal is the fastest codec
for tuples of str/bytes/int there is in the standard library.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any

__all__ = ["encode", "FrameReader"]

_LEN = struct.Struct("!I")
# A frame larger than this is a bug or an attack on the socket, not a message.
MAX_FRAME = 256 << 20

# Worker -> sequencer
PUB = 1  # (PUB, req, channels, text, event_id, event_type, store)
DEL = 2  # (DEL, req, channels, text)
SUBS = 3  # (SUBS, {channel: delta})
INFO = 4  # (INFO, req)
EVENT = 5  # (EVENT, kind, channel)
HELLO = 6  # (HELLO, pid)

# Sequencer -> worker
MSG = 11  # (MSG, channel, id, time, tag, text, event_id, event_type, store, expires)
ACK = 12  # (ACK, req, status, explain, {channel: subscribers})
DELETE = 13  # (DELETE, channel, text)
INFO_REPLY = 14  # (INFO_REPLY, req, {channel: subscribers}, workers, channels)
SNAPSHOT = 15  # (SNAPSHOT, [(channel, last_id, published, [message tuples])])


def encode(*fields: Any) -> bytes:
    data = marshal.dumps(fields)
    return _LEN.pack(len(data)) + data


class FrameReader:
    """Splits a byte stream into decoded frames."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        buf = self.buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > MAX_FRAME:
                raise ValueError(f"bus frame of {size} bytes")
            if n - pos - 4 < size:
                break
            out.append(marshal.loads(bytes(buf[pos + 4 : pos + 4 + size])))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out
