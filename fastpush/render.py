"""Message templates and the byte forms subscribers receive.

A *form* is everything that decides the bytes a subscriber gets for a
message: its location's templates, its mode (chunked stream, EventSource,
WebSocket, or raw for HTTP/1.0) and its padding. The core renders each
message once per form present on a channel, through Form.message().
"""

from __future__ import annotations

import re
from email.utils import formatdate
from typing import TYPE_CHECKING, NamedTuple

from fastpush._core import FRAME_CHUNK, FRAME_NONE, FRAME_WEBSOCKET, Plan

if TYPE_CHECKING:
    from fastpush.config import Location
    from fastpush.registry import Message

__all__ = ["Template", "Form", "FormTable", "http_date"]

_TOKEN = re.compile(rb"~(id|text|size|channel|time|tag|event-id|event-type)~")

# Kinds of streamed output.
STREAM, EVENTSOURCE, WEBSOCKET = "stream", "eventsource", "websocket"


def http_date(t: float) -> bytes:
    """RFC 1123 date, the format of ~time~ and Last-Modified."""
    return formatdate(t, usegmt=True).encode()


def split_lines(text: bytes) -> list[bytes]:
    """Non-empty lines of text, split the way push-stream splits them.

    push-stream compares strstr() results as pointers, so a NULL (not
    found) sorts first: a bare CR only splits when an LF follows later.
    Searching with -1 for "not found" reproduces that exactly.
    """
    lines = []
    start = 0
    while True:
        crlf = text.find(b"\r\n", start)
        cr = text.find(b"\r", start)
        lf = text.find(b"\n", start)
        pos, step = crlf, 2
        if pos == -1 or cr < pos:
            pos, step = cr, 1
        if pos == -1 or lf < pos:
            pos, step = lf, 1
        if pos == -1:
            break
        if pos > start:
            lines.append(text[start:pos])
        start = pos + step
    if start < len(text):
        lines.append(text[start:])
    return lines


def eventsource_lines(text: bytes, line_template: bytes) -> bytes:
    """Apply line_template (e.g. b": ~text~\\n") to each line."""
    return b"".join(
        line_template.replace(b"~text~", line) for line in split_lines(text)
    )


class Template:
    """A compiled push-stream message template (applied in C, see Plan)."""

    __slots__ = ("source", "parts", "plan")

    def __init__(self, source: bytes) -> None:
        self.source = source
        # Alternating literal / token list, split once at config time.
        self.parts: list[bytes] = _TOKEN.split(source)
        self.plan = Plan(self.parts, FRAME_NONE, http_date)

    def apply(self, msg: Message, text: bytes | None = None) -> bytes:
        return self.plan.apply(msg, text)


class Padding(NamedTuple):
    header_min: int
    message_min: int


class Form:
    """Bytes of one (location, mode, framing, padding) combination."""

    def __init__(
        self,
        index: int,
        location: Location,
        kind: str,
        chunked: bool,
        padding: Padding | None,
        padding_max: int,
        ping_text: bytes,
    ) -> None:
        self.index = index
        self.location = location
        self.kind = kind
        self.chunked = chunked
        self.padding = padding
        self.padding_max = padding_max
        tpl = location.message_template.encode()
        header = location.header_template.encode()
        footer = location.footer_template.encode()
        if kind == EVENTSOURCE:
            # push-stream turns the templates into EventSource syntax:
            # comments for header and footer, data lines for messages.
            if not tpl.startswith(b"data: "):
                tpl = b"data: " + (tpl or b"~text~") + b"\n"
            if not header.startswith(b": "):
                header = eventsource_lines(header, b": ~text~\n") if header else b": \n"
            if footer and not footer.startswith(b": "):
                footer = eventsource_lines(footer, b": ~text~\n")
        self.template = Template(tpl)
        framing = (
            FRAME_WEBSOCKET
            if kind == WEBSOCKET
            else FRAME_CHUNK
            if chunked
            else FRAME_NONE
        )
        # Frames any bytes (a template without tokens never applies).
        self.framer = Plan([b""], framing, http_date)
        # The whole message in C, when it is the template framed: neither
        # EventSource's per-line fields nor padding.
        self.plan: Plan | None = None
        if kind != EVENTSOURCE and padding is None:
            self.plan = Plan(self.template.parts, framing, http_date)
        self.header_text = header
        self.footer_text = footer
        self.ping_text = ping_text

    # -- framing -------------------------------------------------------------

    def frame(self, data: bytes) -> bytes:
        """data as one chunk or WebSocket frame; nothing for no data."""
        return self.framer.frame(data)

    def _pad(self, length: int, minimum: int) -> bytes:
        diff = minimum - length
        if diff <= 0:
            return b""
        size = min((diff // 100 + 1) * 100, self.padding_max)
        if self.kind == EVENTSOURCE:
            return self.frame(b":" * (size - 1) + b"\n")
        pad = b"\r\n" * (size // 2 + 1)
        return self.frame(pad[len(pad) - size :])

    # -- what the subscriber receives ----------------------------------------

    def header(self) -> bytes:
        if not self.header_text:
            return b""
        out = self.frame(self.header_text)
        if self.padding is not None:
            out += self._pad(len(self.header_text), self.padding.header_min)
        return out

    def format(self, msg: Message) -> bytes:
        """The message through the template, unframed."""
        if self.kind == EVENTSOURCE:
            lines = [self.template.apply(msg, line) for line in split_lines(msg.text)]
            return b"".join(lines) + b"\n"
        return self.template.apply(msg)

    def pieces(self, msg: Message) -> list[bytes]:
        """What push-stream writes for msg, one write (chunk) each, unframed."""
        out = []
        if self.kind == EVENTSOURCE:
            # A header that was sent empty still gives its (empty) field.
            if msg.event_id is not None:
                out.append(b"id: " + msg.event_id + b"\n")
            if msg.event_type is not None:
                out.append(b"event: " + msg.event_type + b"\n")
        out.append(self.format(msg))
        return out

    def message(self, msg: Message) -> bytes:
        out = msg.rendered.get(self.index)
        if out is not None:
            return out
        if self.plan is not None:
            out = self.plan.render(msg)
            if msg.id > 0:
                msg.rendered[self.index] = out
            return out
        pieces = self.pieces(msg)
        parts = [self.frame(p) for p in pieces]
        if self.padding is not None:
            parts.append(self._pad(len(pieces[-1]), self.padding.message_min))
        out = b"".join(parts)
        if msg.id > 0:
            msg.rendered[self.index] = out
        return out

    def ping(self) -> bytes:
        if self.kind == WEBSOCKET:
            # A WebSocket ping is a control frame, not a message.
            return b"\x89\x00"
        if self.kind == EVENTSOURCE:
            # push-stream's EventSource ping is a fixed comment line.
            return self.frame(b": -1\n")
        from fastpush.registry import PING_MESSAGE_ID, Message

        ping = Message(PING_MESSAGE_ID, 0, 0, self.ping_text or b" ", "")
        return self.message(ping)

    def footer(self) -> bytes:
        """Footer and end of the response, sent before the server closes."""
        out = self.frame(self.footer_text) if self.footer_text else b""
        if self.kind == WEBSOCKET:
            return out + b"\x88\x00"
        if self.chunked:
            return out + b"0\r\n\r\n"
        return out


class FormTable:
    """Interns forms so the core can refer to them by a small integer."""

    def __init__(self, ping_text: str, padding_max: int) -> None:
        self.forms: list[Form] = []
        # Form.plan by index, the same list object for the hub's fan-out.
        self.plans: list[Plan | None] = []
        self._index: dict[tuple[int, str, bool, Padding | None], Form] = {}
        self.ping_text = ping_text.encode()
        self.padding_max = padding_max

    def get(
        self, location: Location, kind: str, chunked: bool, padding: Padding | None
    ) -> Form:
        # By identity: after a reload a new location may reuse an index,
        # and the old one's subscribers keep their own form.
        key = (id(location), kind, chunked, padding)
        form = self._index.get(key)
        if form is None:
            form = Form(
                len(self.forms),
                location,
                kind,
                chunked,
                padding,
                self.padding_max,
                self.ping_text,
            )
            self.forms.append(form)
            self.plans.append(form.plan)
            self._index[key] = form
        return form

    def __len__(self) -> int:
        return len(self.forms)
