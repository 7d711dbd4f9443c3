"""Publisher and channels-statistics locations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastpush.http import info, response
from fastpush.http.channels import (
    ALL_CHANNELS,
    CHANNELS_EXCEEDED,
    EMPTY_POST,
    EVENTS_CHANNEL_INTERNAL,
    NO_CHANNEL_ID,
    ChannelError,
    check_id,
    parse_subscribed,
    split_ids,
)
from fastpush.registry import ChannelLimitError, StoreFullError

if TYPE_CHECKING:
    from fastpush.config import Location
    from fastpush.http.protocol import HttpProtocol, Request
    from fastpush.server import App

ALLOWED_HEADERS = (
    b"If-Modified-Since,If-None-Match,Etag,Event-Id,Event-Type,Last-Event-Id"
)


STORE_FULL = "Message store is full (shared_memory_size)."
CHANNEL_DELETED = "Channel deleted."


def cors_headers(loc: Location, methods: bytes) -> list[tuple[bytes, bytes]]:
    if not loc.allowed_origins:
        return []
    return [
        (b"Access-Control-Allow-Origin", loc.allowed_origins.encode()),
        (b"Access-Control-Allow-Methods", methods),
        (b"Access-Control-Allow-Headers", ALLOWED_HEADERS),
    ]


def handle_publisher(
    app: App, conn: HttpProtocol, req: Request, loc: Location, channels_path: str
) -> None:
    admin = loc.mode == "admin"
    methods = b"GET, POST, PUT, DELETE" if admin else b"GET, POST, PUT"
    cors = cors_headers(loc, methods)
    keep = req.keep_alive
    if req.method == "OPTIONS":
        conn.send(response.head(200, length=0, keep_alive=keep, extra=cors))
        return
    if req.method not in ("GET", "POST", "PUT") and not (
        admin and req.method == "DELETE"
    ):
        conn.send(
            response.error(
                405, None, keep_alive=keep, extra=cors + [(b"Allow", methods)]
            )
        )
        return
    # push-stream parses a publisher's ids like a subscriber's: a .bN
    # suffix is dropped.
    ids = [r.id for r in parse_subscribed(channels_path)]
    if not ids:
        conn.send(response.error(400, NO_CHANNEL_ID, keep_alive=keep, extra=cors))
        return
    s = app.config.settings
    try:
        for cid in ids:
            check_id(cid, s.max_channel_id_length)
            if req.method != "GET" and cid == app.registry.events_channel_id:
                raise ChannelError(403, EVENTS_CHANNEL_INTERNAL)
    except ChannelError as err:
        conn.send(response.error(err.status, err.explain, keep_alive=keep, extra=cors))
        return

    reg = app.registry
    if req.method == "GET":
        found = [ch for ch in (reg.get(cid) for cid in ids) if ch is not None]
        if not found:
            conn.send(response.error(404, None, keep_alive=keep, extra=cors))
            return
        fmt = info.negotiate(req.headers.get("accept"))
        body = (
            info.single(app, found[0], fmt)
            if len(found) == 1
            else info.group(app, found, fmt)
        )
        conn.send(_doc(app, req, body, fmt, cors))
        return

    if req.method == "DELETE":
        found = [ch for ch in (reg.get(cid) for cid in ids) if ch is not None]
        if not found:
            conn.send(response.error(404, None, keep_alive=keep, extra=cors))
            return
        text = bytes(req.body) or s.channel_deleted_message_text.encode()
        for ch in found:
            app.delete_channel(ch, text)
        conn.send(response.error(200, CHANNEL_DELETED, keep_alive=keep, extra=cors))
        return

    # POST / PUT. push-stream creates the channels before it looks at the
    # body, so even an empty POST leaves them behind.
    try:
        channels = [reg.get_or_create(cid) for cid in ids]
    except ChannelLimitError:
        conn.send(response.error(403, CHANNELS_EXCEEDED, keep_alive=keep, extra=cors))
        return
    if not req.body:
        conn.send(response.error(400, EMPTY_POST, keep_alive=keep, extra=cors))
        return
    text = bytes(req.body)
    # Absent and empty differ: an empty header still gives an empty field.
    eid = req.headers.get("event-id")
    etype = req.headers.get("event-type")
    event_id = eid.encode() if eid is not None else None
    event_type = etype.encode() if etype is not None else None
    try:
        for ch in channels:
            app.publish(ch, text, event_id, event_type, loc.store_messages)
    except StoreFullError:
        conn.send(response.error(500, STORE_FULL, keep_alive=keep, extra=cors))
        return
    if not loc.channel_info_on_publish:
        conn.send(response.head(200, length=0, keep_alive=keep, extra=cors))
        return
    fmt = info.negotiate(req.headers.get("accept"))
    body = (
        info.single(app, channels[0], fmt)
        if len(channels) == 1
        else info.group(app, channels, fmt)
    )
    conn.send(_doc(app, req, body, fmt, cors))


def handle_statistics(
    app: App, conn: HttpProtocol, req: Request, loc: Location, channels_path: str
) -> None:
    keep = req.keep_alive
    cors = cors_headers(loc, b"GET")
    if req.method != "GET":
        conn.send(
            response.error(
                405, None, keep_alive=keep, extra=cors + [(b"Allow", b"GET")]
            )
        )
        return
    reg = app.registry
    fmt = info.negotiate(req.headers.get("accept"))
    ids = split_ids(channels_path)
    if not ids:
        body = info.summary(app, fmt)
    elif ids == [ALL_CHANNELS]:
        body = info.group(app, reg.iter_all(), fmt)
    elif len(ids) == 1 and ids[0].endswith("*"):
        body = info.group(app, reg.iter_prefix(ids[0][:-1]), fmt)
    else:
        found = [ch for ch in (reg.get(cid) for cid in ids) if ch is not None]
        if not found:
            conn.send(response.error(404, None, keep_alive=keep, extra=cors))
            return
        body = (
            info.single(app, found[0], fmt)
            if len(found) == 1
            else info.group(app, found, fmt)
        )
    conn.send(_doc(app, req, body, fmt, cors))


def _doc(
    app: App,
    req: Request,
    body: bytes,
    fmt: info.Format,
    cors: list[tuple[bytes, bytes]],
) -> bytes:
    if response.gzip_wanted(app.config.settings, req, fmt.content_type):
        return response.head(
            200,
            content_type=fmt.content_type,
            chunked=True,
            keep_alive=req.keep_alive,
            extra=cors + [response.GZIP_HEADER],
        ) + response.gzip_chunked(body)
    return (
        response.head(
            200,
            content_type=fmt.content_type,
            length=len(body),
            keep_alive=req.keep_alive,
            extra=cors,
        )
        + body
    )
