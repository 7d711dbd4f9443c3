"""Channel ids in a request path and their checks, shared by every role."""

from __future__ import annotations

import re
from typing import NamedTuple

# push-stream's backtrack suffix: ".b<N>" at the end of a channel segment.
_BACKTRACK = re.compile(r"^(.*?)(?:\.b(\d+))?$", re.DOTALL)

ALL_CHANNELS = "ALL"

NO_CHANNEL_ID = "No channel id provided."
NOT_AUTHORIZED = "Channel id not authorized for this method."
TOO_LARGE = "Channel id is too large."
TOO_MANY_WILDCARDS = "Subscribed too much wildcard channels."
TOO_MANY_SUBSCRIBERS = "Subscribers limit per channel has been exceeded."
CANNOT_CREATE = "Subscriber could not create channels."
CHANNELS_EXCEEDED = "Number of channels were exceeded."
EVENTS_CHANNEL_INTERNAL = "Only internal routines can change events channel."
EVENTS_CHANNEL_FORBIDDEN = "Subscription to events channel is not allowed."
EMPTY_POST = "Empty post requests are not allowed."


class Requested(NamedTuple):
    id: str
    backtrack: int


class ChannelError(Exception):
    def __init__(self, status: int, explain: str) -> None:
        super().__init__(explain)
        self.status = status
        self.explain = explain


def split_ids(value: str) -> list[str]:
    return [part for part in value.split("/") if part]


def parse_subscribed(value: str) -> list[Requested]:
    """'a.b3/b' -> [('a', 3), ('b', 0)]."""
    out = []
    for part in split_ids(value):
        m = _BACKTRACK.match(part)
        assert m is not None
        cid, n = m.group(1), m.group(2)
        out.append(Requested(cid, int(n) if n else 0))
    return [r for r in out if r.id]


def check_id(cid: str, max_length: int | None) -> None:
    """Raise ChannelError for an id push-stream refuses."""
    if cid == ALL_CHANNELS or "*" in cid:
        raise ChannelError(403, NOT_AUTHORIZED)
    if max_length is not None and len(cid) > max_length:
        raise ChannelError(400, TOO_LARGE)
