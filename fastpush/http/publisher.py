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
    TOO_LARGE,
    ChannelError,
    check_id,
    parse_subscribed,
)
from fastpush.registry import ChannelLimitError

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastpush._core import Channel
    from fastpush.config import Location
    from fastpush.http.protocol import Reply, Request
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
    app: App, reply: Reply, req: Request, loc: Location, channels_path: str
) -> None:
    admin = loc.mode == "admin"
    methods = b"GET, POST, PUT, DELETE" if admin else b"GET, POST, PUT"
    cors = cors_headers(loc, methods)
    keep = req.keep_alive
    if req.method == "OPTIONS":
        reply(response.head(200, length=0, keep_alive=keep, extra=cors))
        return
    if req.method not in ("GET", "POST", "PUT") and not (
        admin and req.method == "DELETE"
    ):
        reply(
            response.error(
                405, None, keep_alive=keep, extra=cors + [(b"Allow", methods)]
            )
        )
        return
    # push-stream parses a publisher's ids like a subscriber's: a .bN
    # suffix is dropped.
    ids = [r.id for r in parse_subscribed(channels_path)]
    if not ids:
        reply(response.error(400, NO_CHANNEL_ID, keep_alive=keep, extra=cors))
        return
    s = app.config.settings
    try:
        for cid in ids:
            check_id(cid, s.max_channel_id_length)
            if req.method != "GET" and cid == app.registry.events_channel_id:
                raise ChannelError(403, EVENTS_CHANNEL_INTERNAL)
    except ChannelError as err:
        reply(response.error(err.status, err.explain, keep_alive=keep, extra=cors))
        return

    reg = app.registry
    fmt = info.negotiate(req.headers.get("accept"))

    def channel_info(view: info.View, channels: list[Channel]) -> None:
        if len(channels) == 1:
            body = info.single(view, channels[0], fmt)
        else:
            body = info.group(view, channels, fmt)
        reply(_doc(app, req, body, fmt, cors))

    if req.method == "GET":
        found = [ch for ch in (reg.get(cid) for cid in ids) if ch is not None]
        if not found:
            reply(response.error(404, None, keep_alive=keep, extra=cors))
            return
        app.view(lambda view: channel_info(view, found))
        return

    if req.method == "DELETE":
        if not any(reg.get(cid) is not None for cid in ids):
            reply(response.error(404, None, keep_alive=keep, extra=cors))
            return

        def deleted(status: int) -> None:
            if status == 200:
                reply(response.error(200, CHANNEL_DELETED, keep_alive=keep, extra=cors))
            else:
                reply(response.error(status, None, keep_alive=keep, extra=cors))

        text = bytes(req.body) or s.channel_deleted_message_text.encode()
        app.delete_request(ids, text, deleted)
        return

    # POST / PUT. push-stream creates the channels before it looks at the
    # body, so even an empty POST leaves them behind.
    try:
        channels = [reg.get_or_create(cid) for cid in ids]
    except ChannelLimitError:
        reply(response.error(403, CHANNELS_EXCEEDED, keep_alive=keep, extra=cors))
        return
    if not req.body:
        reply(response.error(400, EMPTY_POST, keep_alive=keep, extra=cors))
        return
    # Absent and empty differ: an empty header still gives an empty field.
    eid = req.headers.get("event-id")
    etype = req.headers.get("event-type")

    def published(status: int, explain: str | None, view: info.View) -> None:
        if status != 200:
            reply(response.error(status, explain, keep_alive=keep, extra=cors))
        elif not loc.channel_info_on_publish:
            reply(response.head(200, length=0, keep_alive=keep, extra=cors))
        else:
            channel_info(view, channels)

    app.publish_request(
        channels,
        bytes(req.body),
        eid.encode() if eid is not None else None,
        etype.encode() if etype is not None else None,
        loc.store_messages,
        published,
    )


# push-stream tags its statistics answers with these (its version header
# says 0.5.5 in the 0.6.0 release); clients that look for them find them.
STATS_HEADERS = [
    (b"X-Nginx-PushStream-Tag", b"0.5.5"),
    (b"X-Nginx-PushStream-Commit", b"3bc016f811d50374251960db091557571dfd7393"),
]


def handle_statistics(
    app: App, reply: Reply, req: Request, loc: Location, channels_path: str
) -> None:
    keep = req.keep_alive
    cors = cors_headers(loc, b"GET")
    if req.method != "GET":
        reply(
            response.error(
                405, None, keep_alive=keep, extra=cors + [(b"Allow", b"GET")]
            )
        )
        return
    extra = cors + STATS_HEADERS
    reg = app.registry
    fmt = info.negotiate(req.headers.get("accept"))
    ids = [r.id for r in parse_subscribed(channels_path)]

    def answer(body: Callable[[info.View], bytes]) -> None:
        app.view(lambda view: reply(_doc(app, req, body(view), fmt, extra)))

    if not ids:
        answer(lambda view: info.summary(view, fmt))
        return
    found = []
    limit = app.config.settings.max_channel_id_length
    for cid in ids:
        if limit is not None and len(cid) > limit:
            reply(response.error(400, TOO_LARGE, keep_alive=keep, extra=extra))
            return
        if "*" in cid:
            # A prefix listing answers at once; later ids are ignored.
            prefix = cid.split("*", 1)[0]

            def by_prefix(view: info.View, p: str = prefix) -> bytes:
                return info.group(view, reg.iter_prefix(p), fmt)

            answer(by_prefix)
            return
        if cid == ALL_CHANNELS:
            answer(lambda view: info.group(view, reg.iter_all(), fmt))
            return
        ch = reg.get(cid)
        if ch is not None:
            found.append(ch)
    if not found:
        reply(response.error(404, None, keep_alive=keep, extra=extra))
        return
    if len(found) == 1:
        answer(lambda view: info.single(view, found[0], fmt))
    else:
        answer(lambda view: info.group(view, found, fmt))


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
