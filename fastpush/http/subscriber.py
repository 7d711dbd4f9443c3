"""Subscriber locations: the handshake in Python, the stream in the core."""

from __future__ import annotations

import base64
import hashlib
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from fastpush._core import Channel, websocket_frame
from fastpush.http import response
from fastpush.http.channels import (
    CANNOT_CREATE,
    CHANNELS_EXCEEDED,
    EVENTS_CHANNEL_FORBIDDEN,
    NO_CHANNEL_ID,
    TOO_MANY_SUBSCRIBERS,
    TOO_MANY_WILDCARDS,
    ChannelError,
    check_id,
    parse_subscribed,
)
from fastpush.http.publisher import cors_headers
from fastpush.http.router import expand
from fastpush.registry import TIMED_OUT_MESSAGE_ID, ChannelLimitError, Message
from fastpush.render import EVENTSOURCE, STREAM, WEBSOCKET, Form, Padding, http_date

if TYPE_CHECKING:
    from fastpush.config import Location
    from fastpush.http.protocol import HttpProtocol, Request
    from fastpush.server import App

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_MISSING_HEADERS = (
    "Don't have at least one of the mandatory headers: Connection, Upgrade, "
    "Sec-WebSocket-Key and Sec-WebSocket-Version"
)
WS_BAD_VERSION = "Version not supported. Supported versions: 8, 13"
MODES = ("streaming", "polling", "long-polling", "eventsource", "websocket")
EVENTSOURCE_TYPE = b"text/event-stream; charset=utf-8"
JSONP_TYPE = b"application/javascript"

WS_CLOSE = 0x8


def handle_subscriber(
    app: App,
    conn: HttpProtocol,
    req: Request,
    loc: Location,
    channels_path: str,
    captures: tuple[str, ...],
) -> None:
    keep = req.keep_alive
    cors = cors_headers(loc, b"GET")
    if req.method == "OPTIONS":
        conn.send(
            response.head(200, length=0, keep_alive=keep, extra=cors, no_cache=False)
        )
        return
    if req.method != "GET":
        if loc.mode == "websocket":
            # push-stream answers a WebSocket location's 405 with Allow only.
            conn.send(
                response.head(
                    405,
                    length=0,
                    keep_alive=False,
                    extra=[(b"Allow", b"GET")],
                    no_cache=False,
                ),
                close=True,
            )
            return
        conn.send(
            response.error(
                405, None, keep_alive=keep, early=cors, extra=[(b"Allow", b"GET")]
            )
        )
        return

    mode = loc.mode
    if mode != "websocket":
        # X-Nginx-PushStream-Mode may turn any location into (long-)polling.
        wanted = (req.headers.get("x-nginx-pushstream-mode") or "").lower()
        if wanted in ("polling", "long-polling"):
            mode = wanted

    def fail(status: int, explain: str | None) -> None:
        conn.send(response.error(status, explain, keep_alive=keep, early=cors))

    accept = None
    if mode == "websocket":
        h = req.headers
        key = h.get("sec-websocket-key")
        version = h.get("sec-websocket-version")
        if not (
            key
            and version
            and "upgrade" in h.get("connection", "").lower()
            and h.get("upgrade", "").lower() == "websocket"
        ):
            conn.send(response.error(400, WS_MISSING_HEADERS, keep_alive=False), True)
            return
        if version.strip() not in ("8", "13"):
            conn.send(
                response.error(
                    400,
                    WS_BAD_VERSION,
                    keep_alive=False,
                    extra=[(b"Sec-WebSocket-Version", b"8, 13")],
                ),
                close=True,
            )
            return
        accept = base64.b64encode(hashlib.sha1(key.strip().encode() + WS_GUID).digest())
        if conn.pending_write():
            conn.send(response.error(503, "Connection busy, retry."), close=True)
            return

        def fail(status: int, explain: str | None) -> None:
            # push-stream has sent the 101 before it looks at the channels,
            # so errors come as a close frame (1008 and a JSON reason).
            assert accept is not None
            out = response.switching_protocols(accept)
            if explain:
                reason = b'{"http_status": %d, "explain":"%s"}' % (
                    status,
                    explain.encode(),
                )
                out += websocket_frame(b"\x03\xf0" + reason, WS_CLOSE)
            conn.send(out, close=True)

    requested = parse_subscribed(channels_path)
    if not requested:
        # A WebSocket gets nothing after its 101, as from push-stream.
        fail(400, NO_CHANNEL_ID if mode != "websocket" else None)
        return
    reg = app.registry
    s = app.config.settings
    try:
        # push-stream's order: each channel's own checks, then the
        # wildcard quota, then creation.
        wildcards = 0
        for r in requested:
            check_id(r.id, s.max_channel_id_length)
            wildcard = reg.is_wildcard(r.id)
            wildcards += wildcard
            ch = reg.get(r.id)
            if loc.authorized_channels_only and not wildcard:
                if ch is None or not reg.stored(ch):
                    raise ChannelError(403, CANNOT_CREATE)
            limit = s.max_subscribers_per_channel
            if limit is not None and ch is not None and reg.subscribers(ch) >= limit:
                raise ChannelError(403, TOO_MANY_SUBSCRIBERS)
            if reg.events_channel_id and r.id == reg.events_channel_id:
                if not loc.allow_connections_to_events_channel:
                    raise ChannelError(403, EVENTS_CHANNEL_FORBIDDEN)
        quota = loc.wildcard_channel_max_qtd
        if (
            quota is not None
            and wildcards
            and (wildcards > quota or wildcards == len(requested))
        ):
            raise ChannelError(403, TOO_MANY_WILDCARDS)
        channels = []
        for r in requested:
            try:
                channels.append(reg.get_or_create(r.id))
            except ChannelLimitError:
                raise ChannelError(403, CHANNELS_EXCEEDED) from None
    except ChannelError as err:
        fail(err.status, err.explain)
        return

    old = _old_messages(
        app, req, loc, channels, [r.backtrack for r in requested], captures
    )
    for ch in channels:
        reg.touch(ch)

    if mode in ("polling", "long-polling"):
        _poll(
            app, conn, req, loc, channels, old, mode == "long-polling", cors, captures
        )
        return

    kind = {"eventsource": EVENTSOURCE, "websocket": WEBSOCKET}.get(mode, STREAM)
    chunked = req.http_minor == 1 and kind != WEBSOCKET
    form = app.forms.get(loc, kind, chunked, _padding(loc, req, captures, app))
    if kind == WEBSOCKET:
        assert accept is not None
        head = response.switching_protocols(accept)
    else:
        head = stream_head(loc, kind, chunked, chunked and keep)
    initial = head + form.header() + b"".join(form.message(m) for m in old)
    if conn.pending_write():
        # The socket still has answers queued in asyncio; handing it over
        # now would lose them.
        fail(503, "Connection busy, retry.")
        return
    fd = conn.detach()
    app.attach(fd, channels, form, kind == WEBSOCKET, loc, initial)


def stream_head(loc: Location, kind: str, chunked: bool, keep_alive: bool) -> bytes:
    """The 200 a streaming or EventSource subscriber gets (the front door
    answers from the same bytes)."""
    content_type = EVENTSOURCE_TYPE if kind == EVENTSOURCE else _content_type(loc)
    return response.head(
        200,
        content_type=content_type,
        chunked=chunked,
        keep_alive=keep_alive,
        early=cors_headers(loc, b"GET"),
    )


def _content_type(loc: Location) -> bytes:
    return (loc.content_type or "text/plain").encode()


def _padding(
    loc: Location, req: Request, captures: tuple[str, ...], app: App
) -> Padding | None:
    if not loc.padding_by_user_agent:
        return None
    if loc.user_agent:
        agent = expand(
            loc.user_agent,
            captures=captures,
            args=req.args,
            headers=req.headers,
            path=req.path,
            remote_addr=req.remote,
        )
    else:
        agent = req.headers.get("user-agent", "")
    for pattern, header_min, message_min in loc.padding_by_user_agent:
        if pattern.search(agent):
            return Padding(header_min, message_min)
    return None


def _resume_values(
    req: Request, loc: Location, captures: tuple[str, ...]
) -> tuple[int, int, bytes | None]:
    """(if_modified_since, tag, last_event_id) from headers or the
    configured variables; -1 / None where absent."""

    def var(template: str) -> str:
        return expand(
            template,
            captures=captures,
            args=req.args,
            headers=req.headers,
            path=req.path,
            remote_addr=req.remote,
        )

    t_raw = (
        var(loc.last_received_message_time)
        if loc.last_received_message_time
        else (req.headers.get("if-modified-since", ""))
    )
    tag_raw = (
        var(loc.last_received_message_tag)
        if loc.last_received_message_tag
        else (req.headers.get("if-none-match", ""))
    )
    if loc.last_event_id:
        ev = var(loc.last_event_id)
        event_id = ev.encode() if ev else None
    else:
        ev_h = req.headers.get("last-event-id")
        event_id = ev_h.encode() if ev_h is not None else None
    since = -1
    if t_raw:
        try:
            since = int(parsedate_to_datetime(t_raw).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            since = -1
    tag = -1
    if tag_raw:
        if len(tag_raw) > 2 and tag_raw.startswith("W/"):
            tag_raw = tag_raw[2:]
        try:
            tag = abs(int(tag_raw))
        except ValueError:
            tag = -1
    return since, tag, event_id


def _old_messages(
    app: App,
    req: Request,
    loc: Location,
    channels: list[Channel],
    backtracks: list[int],
    captures: tuple[str, ...],
) -> list[Message]:
    """Stored messages the subscriber gets before new ones.

    Backtrack wins over resume values; a Last-Event-ID is looked for in
    each channel; If-Modified-Since/If-None-Match select what is newer.
    """
    reg = app.registry
    since, tag, event_id = _resume_values(req, loc, captures)
    out: list[Message] = []
    for ch, n in zip(channels, backtracks):
        if n:
            out.extend(reg.backtrack(ch, n))
        elif event_id is not None:
            out.extend(reg.after_event_id(ch, event_id) or ())
        elif since >= 0:
            out.extend(reg.since(ch, since, tag))
    return out


def _poll(
    app: App,
    conn: HttpProtocol,
    req: Request,
    loc: Location,
    channels: list[Channel],
    old: list[Message],
    long: bool,
    cors: list[tuple[bytes, bytes]],
    captures: tuple[str, ...],
) -> None:
    callback = req.args.get("callback")
    # An EventSource location switched to (long-)polling keeps its framing.
    kind = EVENTSOURCE if loc.mode == "eventsource" else STREAM
    form = app.forms.get(loc, kind, req.http_minor == 1, None)
    keep = req.keep_alive
    answer = _PollAnswer(form, loc, keep, cors, callback)
    answer.gzip = response.gzip_wanted(app.config.settings, req, answer.content_type)
    since, tag, _ = _resume_values(req, loc, captures)
    if old:
        # Validators: the newest (time, tag) among the request's and the
        # channels that had something to send.
        modified, newest = max(since, 0), tag
        sent = {m.channel for m in old}
        for ch in channels:
            if ch.id in sent:
                t, g = int(ch.last_message_time), ch.last_message_tag
                if t > modified:
                    modified, newest = t, g
                elif t == modified and g > newest:
                    newest = g
        conn.send(answer.messages(old, modified, newest))
        return
    if not long:
        # Nothing new: the request's own validators come back.
        conn.send(answer.not_modified(since if since > 0 else None, tag))
        return
    # Long-polling: wait for the next message on any of the channels.
    ttl = loc.longpolling_connection_ttl
    conn.defer()
    timer = None
    waiting = True

    def done() -> None:
        nonlocal waiting
        if not waiting:
            return
        waiting = False
        for ch in channels:
            if ch.waiters is not None:
                try:
                    ch.waiters.remove(on_message)
                except ValueError:
                    pass
                if not ch.waiters:
                    ch.waiters = None
            app.registry.client_unsubscribed(ch)
        if timer is not None:
            timer.cancel()

    def on_message(ch: Channel, msg: Message) -> None:
        done()
        if kind == EVENTSOURCE and callback is None:
            # push-stream's waited answer carries the event-stream type.
            answer.content_type = EVENTSOURCE_TYPE
        conn.resume(answer.messages([msg], msg.time, msg.tag), not answer.reusable)

    def on_timeout() -> None:
        nonlocal timer
        timer = None
        done()
        # A timed-out long-poll tells the client "now" and tag 0.
        now = int(time.time())
        if loc.timeout_with_body:
            conn.resume(answer.messages([_timed_out()], now, 0), not answer.reusable)
        else:
            conn.resume(answer.not_modified(now, 0), not keep)

    for ch in channels:
        if ch.waiters is None:
            ch.waiters = []
        ch.waiters.append(on_message)
        app.registry.client_subscribed(ch)
    conn.on_lost = done
    if ttl:
        timer = app.loop.call_later(ttl, on_timeout)


def _timed_out() -> Message:
    return Message(TIMED_OUT_MESSAGE_ID, 0, 0, b"Timed out", "")


class _PollAnswer:
    """The whole answer of a polling or long-polling request."""

    def __init__(
        self,
        form: Form,
        loc: Location,
        keep: bool,
        cors: list[tuple[bytes, bytes]],
        callback: str | None,
        gzip: bool = False,
    ) -> None:
        self.gzip = gzip
        self.form = form
        self.loc = loc
        self.keep = keep
        self.cors = cors
        self.callback = callback
        self.content_type = JSONP_TYPE if callback is not None else _content_type(loc)
        # Without chunking (HTTP/1.0) the end of the body is the close.
        self.reusable = keep and form.chunked

    def messages(self, msgs: list[Message], modified: int, tag: int) -> bytes:
        form = self.form
        if msgs[-1].id < 0:
            # Made-up messages (deleted, timed out) carry now and tag 0.
            modified, tag = int(time.time()), 0
        pieces = []
        if form.header_text:
            pieces.append(form.header_text)
        if self.callback is not None:
            # JSONP: callback, "([", messages separated by ",", "]);" —
            # each its own chunk, as push-stream writes them.
            pieces.append(self.callback.encode())
            pieces.append(b"([")
            for i, m in enumerate(msgs):
                if i:
                    pieces.append(b",")
                pieces.append(form.format(m))
            pieces.append(b"]);")
        else:
            for m in msgs:
                pieces.extend(form.pieces(m))
        if form.footer_text:
            pieces.append(form.footer_text)
        extra = []
        if tag >= 0:
            extra.append((b"Etag", b"W/%d" % tag))
        if self.gzip and form.chunked:
            body = response.gzip_chunked(b"".join(pieces))
            extra.append(response.GZIP_HEADER)
        else:
            body = b"".join([form.frame(p) for p in pieces])
            if form.chunked:
                body += b"0\r\n\r\n"
        head = response.head(
            200,
            content_type=self.content_type,
            last_modified=http_date(modified) if modified > 0 else None,
            chunked=form.chunked,
            keep_alive=self.reusable,
            early=self.cors,
            extra=extra,
        )
        return head + body

    def not_modified(self, modified: int | None, tag: int) -> bytes:
        extra = []
        if tag >= 0:
            extra.append((b"Etag", b"W/%d" % tag))
        return response.head(
            304,
            content_type=self.content_type,
            length=0,
            last_modified=http_date(modified) if modified else None,
            keep_alive=self.keep,
            early=self.cors,
            extra=extra,
        )
