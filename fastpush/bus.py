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

# Reads the frames (splitting, decoding, and a worker's stamped messages).
from fastpush._core import BUS_FRAME_LIMIT, BUS_MSG_KIND, BusFrameError, BusReader

__all__ = ["encode", "BusFrameError", "BusReader"]

_LEN = struct.Struct("!I")
# A frame larger than this is a bug or an attack on the socket, not a message.
MAX_FRAME = BUS_FRAME_LIMIT

# Worker -> sequencer
PUB = 1  # (PUB, req, channels, text, event_id, event_type, store)
DEL = 2  # (DEL, req, channels, text)
SUBS = 3  # (SUBS, {channel: delta})
INFO = 4  # (INFO, req)
EVENT = 5  # (EVENT, kind, channel)
HELLO = 6  # (HELLO, pid)

# Sequencer -> worker
# (MSG, channel, id, time, tag, text, event_id, event_type, store, expires):
# BusReader applies these in C, so the fields are fixed there too.
MSG = BUS_MSG_KIND
ACK = 12  # (ACK, req, status, explain, {channel: subscribers})
DELETE = 13  # (DELETE, channel, text)
INFO_REPLY = 14  # (INFO_REPLY, req, {channel: subscribers}, workers, channels)
SNAPSHOT = 15  # (SNAPSHOT, [(channel, last_id, published, [message tuples])])


def encode(*fields: Any) -> bytes:
    data = marshal.dumps(fields)
    return _LEN.pack(len(data)) + data
