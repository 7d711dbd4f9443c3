"""Channel information and statistics documents, in push-stream's JSON."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastpush._core import Channel
    from fastpush.server import App


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def channel_json(app: App, ch: Channel) -> bytes:
    return (
        '{"channel": "%s", "published_messages": %d, "stored_messages": %d, '
        '"subscribers": %d}'
        % (
            _escape(ch.id),
            ch.published_messages,
            app.registry.stored(ch),
            app.registry.subscribers(ch),
        )
    ).encode()


def single(app: App, ch: Channel) -> bytes:
    return channel_json(app, ch) + b"\r\n"


def group(app: App, channels: Iterable[Channel]) -> bytes:
    reg = app.registry
    items = [channel_json(app, ch) for ch in channels]
    head = (
        '{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
        '"uptime": %d, "infos": [\r\n'
        % (
            app.hostname,
            _iso(time.time()),
            reg.channel_count(),
            reg.wildcard_channels,
            int(time.time() - reg.started),
        )
    ).encode()
    body = b",\r\n".join(items)
    return head + body + (b"\r\n" if items else b"") + b"]}\r\n"


def summary(app: App) -> bytes:
    reg = app.registry
    now = time.time()
    workers = app.worker_infos()
    by_worker = ",\r\n".join(
        '{"pid": "%d", "subscribers": %d, "uptime": %d}' % w for w in workers
    )
    return (
        '{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
        '"published_messages": %d, "stored_messages": %d, "messages_in_trash": %d, '
        '"channels_in_delete": %d, "channels_in_trash": %d, "subscribers": %d, '
        '"uptime": %d, "by_worker": [\r\n%s\r\n]}\r\n'
        % (
            app.hostname,
            _iso(now),
            reg.channel_count(),
            reg.wildcard_channels,
            reg.published_messages,
            reg.stored_messages,
            0,
            0,
            0,
            reg.total_subscribers(),
            int(now - reg.started),
            by_worker,
        )
    ).encode()


def _escape(s: str) -> str:
    # push-stream writes ids as they are; only make the JSON parseable.
    return s.replace("\\", "\\\\").replace('"', '\\"')
