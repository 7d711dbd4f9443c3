"""Which subscriber requests the core's front door answers by itself.

The door (fastpush/core/door.pyx) accepts every connection. For the request
most connections make, `GET <prefix><channel> HTTP/1.1` on a streaming or
EventSource location, with no header that asks for a backlog, another mode
or an upgrade, and a channel that exists, it writes the response head and
attaches the socket to the channel in C. Everything else comes here, to
adopt(), with the bytes already read, and takes the full Python path.

A location is given to the door only when the Python path would answer
every such request with the same bytes, whatever the channel id:
- its regex is a literal prefix and one capture, `^/sub/(.*)`, and
  channels_path is `$1`, so the id is the rest of the path;
- no regex location before it can match such a path: each is of the same
  literal form, ending in '/', and does not occur in this prefix (the id
  holds no '/', so an occurrence would have to lie inside the prefix);
- nothing in it depends on the request: no allow list, user-agent padding,
  authorized_channels_only or resume variables; and no per-channel
  subscriber limit, which the door does not count.
The door itself then checks what depends on the id (length, wildcard,
events channel, "ALL") and hands those requests on too.

A publisher connection (core/publisher.pyx) stays with the door while its
requests are `POST <path>?<arg>=<channel>` with a Content-Length body, on a
location that qualifies in the same sense (see publisher_routes()), and
goes to adopt() at the first request that is not.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import TYPE_CHECKING

from fastpush._core import DoorRoute, PubRoute
from fastpush.http import info, response
from fastpush.http.protocol import HttpProtocol
from fastpush.http.subscriber import stream_head
from fastpush.render import EVENTSOURCE, STREAM

if TYPE_CHECKING:
    from fastpush.config import Location
    from fastpush.server import App

# A regex the door can stand in for: a literal path prefix, then (.*).
_LITERAL_PREFIX = re.compile(r"\^?(/(?:[A-Za-z0-9_-]+/)*)\(\.\*\)\$?")
_DATE_LINE = b"\r\nDate: "
# channels_path of a publisher the door serves: one query argument.
_ONE_ARG = re.compile(r"\$(?:arg_(\w+)|\{arg_(\w+)\})")
# A body larger than this goes to the Python path even where the location
# allows more (client_max_body_size 0: no limit).
DOOR_BODY_MAX = 1 << 20


def door_routes(app: App) -> list[DoorRoute]:
    """The routes for app's current configuration, in location order.

    Their forms are registered in app.forms; the hub must be told the count.
    """
    settings = app.config.settings
    if settings.max_subscribers_per_channel is not None:
        return []
    if settings.keepalive_requests < 2:
        return []  # every answer would say Connection: close
    routes = []
    earlier: list[str | None] = []
    for loc in app.config.locations:
        if loc.pattern is None:
            continue  # prefix locations lose to any matching regex anyway
        prefix = literal_prefix(loc)
        if (
            prefix is not None
            and _plain_subscriber(loc)
            and all(q is not None and q not in prefix for q in earlier)
        ):
            routes.append(_route(app, loc, prefix))
        earlier.append(prefix)
    return routes


def publisher_routes(app: App) -> list[PubRoute]:
    """The publisher locations the door answers, for app's configuration.

    Only a location that every `POST <path>?...` reaches and whose
    answer depends on nothing but the channel: a prefix location (the
    router must send its own path there), channels_path one `$arg_x`, no
    allow list and no CORS headers.
    """
    if app.config.settings.keepalive_requests < 2:
        return []
    routes = []
    for loc in app.config.locations:
        if loc.role != "publisher" or loc.path is None or loc.channels_path is None:
            continue
        m = _ONE_ARG.fullmatch(loc.channels_path)
        path = loc.path
        if (
            m is None
            or loc.allow
            or loc.allowed_origins
            or not re.fullmatch(r"/[A-Za-z0-9_/.-]*", path)
            or app.router.match(path) != (loc, ())
        ):
            continue
        routes.append(_pub_route(loc, path, m.group(1) or m.group(2)))
    return routes


def _pub_route(loc: Location, path: str, arg: str) -> PubRoute:
    if loc.channel_info_on_publish:
        # The Python path's answer (handle_publisher, _doc), cut around the
        # body's length and the Date line.
        head = response.head(
            200, content_type=info.JSON.content_type, length=_MARK, keep_alive=True
        )
        pieces = tuple(p.encode() for p in re.split(r"%[sd]", info.JSON.item))
        assert len(pieces) == 5
    else:
        head = response.head(200, length=_MARK, keep_alive=True)
        pieces = None
    before, after = _around_date(head)
    mid, _, post = after.partition(b"%d" % _MARK)
    body_limit = loc.client_max_body_size or DOOR_BODY_MAX
    return PubRoute(
        path.encode(),
        arg.encode(),
        loc.store_messages,
        min(body_limit, DOOR_BODY_MAX),
        before,
        mid,
        post,
        pieces,
    )


def refusal(status: int, explain: str | None) -> bytes:
    """The answer to a publish the sequencer refused (handle_publisher's
    for a door location: keep-alive, no CORS headers)."""
    return response.error(status, explain, keep_alive=True)


# Stands for the Content-Length in the head a PubRoute is cut from.
_MARK = 918273645


def literal_prefix(loc: Location) -> str | None:
    """'/sub/' for a location whose regex is `^/sub/(.*)`, else None."""
    assert loc.pattern is not None
    if loc.pattern.flags & re.IGNORECASE:
        return None
    m = _LITERAL_PREFIX.fullmatch(loc.pattern.pattern)
    return m.group(1) if m else None


def _plain_subscriber(loc: Location) -> bool:
    return (
        loc.role == "subscriber"
        and loc.mode in ("streaming", "eventsource")
        and loc.channels_path == "$1"
        and not loc.allow
        and not loc.padding_by_user_agent
        and not loc.authorized_channels_only
        and not loc.last_received_message_time
        and not loc.last_received_message_tag
        and not loc.last_event_id
    )


def _route(app: App, loc: Location, prefix: str) -> DoorRoute:
    kind = EVENTSOURCE if loc.mode == "eventsource" else STREAM
    form = app.forms.get(loc, kind, True, None)
    before, after = _around_date(stream_head(loc, kind, chunked=True, keep_alive=True))
    return DoorRoute(
        prefix.encode(),
        form.index,
        float(loc.subscriber_connection_ttl or 0.0),
        before,
        after + form.header(),
    )


def _around_date(head: bytes) -> tuple[bytes, bytes]:
    """head before and after its Date line: the door writes the current one."""
    start = head.index(_DATE_LINE) + 2
    end = head.index(b"\r\n", start) + 2
    return head[:start], head[end:]


# The loop keeps only weak references to tasks: one nobody holds may be
# collected while it waits, leaving its connection open and unserved.
_adopting: set[asyncio.Task[None]] = set()


def adopt(app: App, fd: int, data: bytes, served: int = 0, unsent: bytes = b"") -> None:
    """Serve a connection the door handed on, starting with data.

    served: requests the door answered on it already (they count against
    keepalive_requests); unsent: the end of those answers, to write first.
    """
    sock = socket.socket(fileno=fd)
    task = app.loop.create_task(_adopted(app, sock, data, served, unsent))
    _adopting.add(task)
    task.add_done_callback(_adopting.discard)


async def _adopted(
    app: App, sock: socket.socket, data: bytes, served: int, unsent: bytes
) -> None:
    try:
        await app.loop.connect_accepted_socket(
            lambda: HttpProtocol(app, data, served, unsent), sock
        )
    except OSError:
        sock.close()  # the peer is gone already
    except BaseException:
        sock.close()
        raise
