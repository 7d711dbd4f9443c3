"""Channel information and statistics documents, in push-stream's formats.

push-stream answers in JSON unless the Accept header names another
subtype: plain, json, yaml, xml, x-json or x-yaml (first match wins).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastpush._core import Channel
    from fastpush.server import App

CRLF = "\r\n"


@dataclass(frozen=True)
class Format:
    content_type: bytes
    item: str  # one channel: name, published, stored, subscribers
    group_head: str  # hostname, time, channels, wildcard_channels, uptime
    group_item: str
    group_last_item: str
    group_tail: str
    summary: str  # ..., by_worker
    worker_item: str  # pid, subscribers, uptime
    worker_last_item: str


def _fmt(
    content_type: str,
    item: str,
    head: str,
    item_sep: str,
    last_sep: str,
    tail: str,
    summary: str,
    worker: str,
    worker_sep: str,
    worker_last_sep: str,
    item_prefix: str = "",
    single_prefix: str = "",
    worker_prefix: str = "",
) -> Format:
    return Format(
        content_type.encode(),
        single_prefix + item + CRLF,
        head,
        item_prefix + item + item_sep,
        item_prefix + item + last_sep,
        tail,
        summary,
        worker_prefix + worker + worker_sep,
        worker_prefix + worker + worker_last_sep,
    )


# The summary's fields in push-stream's order, with their format.
_SUMMARY_FIELDS = (
    ("hostname", "%s"),
    ("time", "%s"),
    ("channels", "%d"),
    ("wildcard_channels", "%d"),
    ("published_messages", "%d"),
    ("stored_messages", "%d"),
    ("messages_in_trash", "%d"),
    ("channels_in_delete", "%d"),
    ("channels_in_trash", "%d"),
    ("subscribers", "%d"),
    ("uptime", "%d"),
)

_JSON_ITEM = (
    '{"channel": "%s", "published_messages": %d, "stored_messages": %d, '
    '"subscribers": %d}'
)
_JSON = dict(
    item=_JSON_ITEM,
    head='{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
    '"uptime": %d, "infos": [' + CRLF,
    item_sep="," + CRLF,
    last_sep=CRLF,
    tail="]}" + CRLF,
    summary='{"hostname": "%s", "time": "%s", "channels": %d, "wildcard_channels": %d, '
    '"published_messages": %d, "stored_messages": %d, "messages_in_trash": %d, '
    '"channels_in_delete": %d, "channels_in_trash": %d, "subscribers": %d, '
    '"uptime": %d, "by_worker": [' + CRLF + "%s" + CRLF + "]}" + CRLF,
    worker='{"pid": "%d", "subscribers": %d, "uptime": %d}',
    worker_sep="," + CRLF,
    worker_last_sep="",
)
_YAML = dict(
    item="  channel: %s"
    + CRLF
    + "  published_messages: %d"
    + CRLF
    + "  stored_messages: %d"
    + CRLF
    + "  subscribers: %d",
    head="hostname: %s"
    + CRLF
    + "time: %s"
    + CRLF
    + "channels: %d"
    + CRLF
    + "wildcard_channels: %d"
    + CRLF
    + "uptime: %d"
    + CRLF
    + "infos: "
    + CRLF,
    item_sep=CRLF,
    last_sep="",
    tail=CRLF,
    summary="".join("  %s: %s%s" % (k, v, CRLF) for k, v in _SUMMARY_FIELDS)
    + "  by_worker:"
    + CRLF
    + "%s"
    + CRLF,
    worker="    pid: %d" + CRLF + "    subscribers: %d" + CRLF + "    uptime: %d",
    worker_sep=CRLF,
    worker_last_sep="",
    item_prefix=" -" + CRLF,
    worker_prefix="   -" + CRLF,
)
_XML_ITEM = (
    "<channel>"
    + CRLF
    + "  <name>%s</name>"
    + CRLF
    + "  <published_messages>%d</published_messages>"
    + CRLF
    + "  <stored_messages>%d</stored_messages>"
    + CRLF
    + "  <subscribers>%d</subscribers>"
    + CRLF
    + "</channel>"
    + CRLF
)
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" ?>' + CRLF
_XML = dict(
    item=_XML_ITEM,
    head=_XML_DECL
    + "<root>"
    + CRLF
    + "  <hostname>%s</hostname>"
    + CRLF
    + "  <time>%s</time>"
    + CRLF
    + "  <channels>%d</channels>"
    + CRLF
    + "  <wildcard_channels>%d</wildcard_channels>"
    + CRLF
    + "  <uptime>%d</uptime>"
    + CRLF
    + "  <infos>"
    + CRLF,
    item_sep="",
    last_sep="",
    tail="  </infos>" + CRLF + "</root>" + CRLF,
    summary=_XML_DECL
    + "<infos>"
    + CRLF
    + "".join(
        "  <%s>%s</%s>%s" % (k, v, k, CRLF)
        for k, v in (*_SUMMARY_FIELDS, ("by_worker", "%s"))
    )
    + "</infos>"
    + CRLF,
    worker="<worker>"
    + CRLF
    + "  <pid>%d</pid>"
    + CRLF
    + "  <subscribers>%d</subscribers>"
    + CRLF
    + "  <uptime>%d</uptime>"
    + CRLF
    + "</worker>"
    + CRLF,
    worker_sep="",
    worker_last_sep="",
    single_prefix=_XML_DECL,
)
_PLAIN = dict(
    item="channel: %s"
    + CRLF
    + "published_messages: %d"
    + CRLF
    + "stored_messages: %d"
    + CRLF
    + "active_subscribers: %d",
    head="hostname: %s, time: %s, channels: %d, wildcard_channels: %d, uptime: %d, "
    "infos: " + CRLF,
    item_sep="," + CRLF,
    last_sep="",
    tail=CRLF,
    summary="".join("%s: %s%s" % (k, v, CRLF) for k, v in _SUMMARY_FIELDS)
    + "by_worker:"
    + CRLF
    + "%s"
    + CRLF,
    worker="  pid: %d" + CRLF + "  subscribers: %d" + CRLF + "  uptime: %d",
    worker_sep="," + CRLF,
    worker_last_sep="",
)

# In push-stream's matching order.
FORMATS: list[tuple[str, Format]] = [
    ("plain", _fmt("text/plain", **_PLAIN)),
    ("json", _fmt("application/json", **_JSON)),
    ("yaml", _fmt("application/yaml", **_YAML)),
    ("xml", _fmt("application/xml", **_XML)),
    ("x-json", _fmt("text/x-json", **_JSON)),
    ("x-yaml", _fmt("text/x-yaml", **_YAML)),
]
JSON = FORMATS[1][1]


def negotiate(accept: str | None) -> Format:
    """The format the Accept header asks for, JSON by default."""
    if accept:
        pos = accept.find("/")
        while pos != -1:
            rest = accept[pos + 1 :]
            for subtype, fmt in FORMATS:
                if rest.startswith(subtype):
                    return fmt
            pos = accept.find("/", pos + 1)
    return JSON


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


class View:
    """Subscriber counts as one worker sees them, or the whole server's.

    With one worker the registry's own counts are the truth; with several,
    the sequencer's counts (subscribers of every worker) are passed in.
    """

    def __init__(
        self,
        app: App,
        counts: dict[str, int] | None = None,
        workers: list[tuple[int, int, int]] | None = None,
        channels: int | None = None,
    ) -> None:
        self.app = app
        self.counts = counts
        self._workers = workers
        self._channels = channels

    def subscribers(self, ch: Channel) -> int:
        if self.counts is None:
            return self.app.registry.subscribers(ch)
        return self.counts.get(ch.id, 0)

    def total_subscribers(self) -> int:
        if self.counts is None:
            return self.app.registry.total_subscribers()
        return sum(self.counts.values())

    def workers(self) -> list[tuple[int, int, int]]:
        if self._workers is None:
            return self.app.worker_infos()
        return self._workers

    def channel_count(self) -> int:
        if self._channels is None:
            return self.app.registry.channel_count()
        return self._channels


def _item(view: View, ch: Channel, pattern: str) -> str:
    return pattern % (
        ch.id,
        ch.published_messages,
        view.app.registry.stored(ch),
        view.subscribers(ch),
    )


def single(view: View, ch: Channel, fmt: Format = JSON) -> bytes:
    return _item(view, ch, fmt.item).encode()


def group(view: View, channels: Iterable[Channel], fmt: Format = JSON) -> bytes:
    app = view.app
    reg = app.registry
    now = time.time()
    chans = list(channels)
    out = [
        fmt.group_head
        % (
            app.hostname,
            _iso(now),
            view.channel_count(),
            reg.wildcard_channels,
            int(now - reg.started),
        )
    ]
    for i, ch in enumerate(chans):
        last = i == len(chans) - 1
        out.append(_item(view, ch, fmt.group_last_item if last else fmt.group_item))
    out.append(fmt.group_tail)
    return "".join(out).encode()


def summary(view: View, fmt: Format = JSON) -> bytes:
    app = view.app
    reg = app.registry
    now = time.time()
    workers = view.workers()
    by_worker = "".join(
        (fmt.worker_last_item if i == len(workers) - 1 else fmt.worker_item) % w
        for i, w in enumerate(workers)
    )
    return (
        fmt.summary
        % (
            app.hostname,
            _iso(now),
            view.channel_count(),
            reg.wildcard_channels,
            reg.published_messages,
            reg.stored_messages,
            0,
            0,
            0,
            view.total_subscribers(),
            int(now - reg.started),
            by_worker,
        )
    ).encode()
