"""The pipeline contract: parse -> compute -> publish.

A job body goes through ``parse`` (bytes to data), ``compute`` (data to the
messages to publish: cleaned, transformed, anonymised, formatted and compressed
*once*, plus the channels each goes to) and ``publish`` (the messages to a
``Publisher``).  The glue (fastpush.glue) runs ``process`` for a batch of jobs,
hands all their messages to the publisher in one call, and finishes a job only
once every one of its messages was published.

There are two equivalent ways to build one:

* the mixin form of the PyCon 2013 talk: ``class P(JSONParserMixin,
  AnonymizeMixin, HTTPPublisherMixin): pass`` - each mixin overrides one hook of
  ``Pipeline`` (see fastpush.pipeline.mixins);
* plain composition of callables: ``compose(parse_json, clean_post, anonymize,
  route=post_channels, publisher=HTTPPublisher(url))``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable


class BadInput(ValueError):
    """The job body cannot be understood (does not parse, misses fields).

    Retrying cannot help; the glue cancels the job with the error recorded and
    the attempt limit parks it for good (never retried forever)."""


class PipelineError(RuntimeError):
    """The pipeline is misconfigured (no publisher, no channels...)."""


class PublishError(Exception):
    """Some channels of one message were not published.

    ``channels`` are the ones that failed (the glue retries only those);
    ``retryable`` False means a retry cannot help (say, HTTP 403 or 413)."""

    def __init__(
        self, reason: str, channels: Sequence[str] = (), retryable: bool = True
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.channels = tuple(channels)
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"PublishError({self.reason!r}, channels={self.channels!r})"


class Message:
    """One formatted body and the channels it goes to.

    ``body`` is the final client format, made once and shared by every channel;
    ``event_id``/``event_type`` become push-stream's Event-Id/Event-Type.
    """

    __slots__ = ("channels", "body", "event_id", "event_type")

    def __init__(
        self,
        channels: Sequence[str],
        body: bytes,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        self.channels = tuple(channels)
        self.body = body
        self.event_id = event_id
        self.event_type = event_type

    def only(self, channels: Sequence[str]) -> Message:
        """The same message for a subset of its channels (for retries)."""
        return Message(channels, self.body, self.event_id, self.event_type)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.channels, self.body, self.event_id, self.event_type) == (
            other.channels,
            other.body,
            other.event_id,
            other.event_type,
        )

    def __repr__(self) -> str:
        return f"Message({self.channels!r}, {self.body[:40]!r}...)"


PublishOutcome = list["PublishError | None"]


@runtime_checkable
class Publisher(Protocol):
    """Delivers messages.  ``publish`` takes a whole batch so that a publisher
    can pipeline it (one HTTP keep-alive connection, one Redis round trip) and
    returns one outcome per message, in order: None, or the PublishError
    naming the channels that failed.  It raises only when it is unusable."""

    async def start(self) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome: ...

    async def aclose(self) -> None: ...


class InProcessPublish(Protocol):
    """The server's own publish, passed in when glue runs inside ``serve``.

    It publishes at once and returns None (one worker), or returns an
    awaitable that resolves once the message is sequenced (several); it
    raises when the message was refused."""

    def __call__(
        self,
        channel: str,
        body: bytes,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> Awaitable[None] | None: ...


# Plain-callable stage types for ``compose``.
Parser = Callable[[bytes], Any]
Step = Callable[[Any], Any]
Router = Callable[[Any], Iterable[str]]


# json.dumps with any non-default argument builds a new encoder per call.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def to_bytes(data: Any) -> bytes:
    """Default formatting: bytes as they are, text as UTF-8, anything else
    as compact JSON."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    try:
        return _encode_json(data).encode()
    except (TypeError, ValueError) as exc:
        raise BadInput(f"cannot format as JSON: {exc}") from None


def default_route(data: Any) -> tuple[str, ...]:
    """Channels named by the job itself: a ``channels`` list, else the
    DISQUS post channels (forum, thread, user, post)."""
    if isinstance(data, dict) and "channels" in data:
        channels = data["channels"]
        if isinstance(channels, str) or not isinstance(channels, (list, tuple)):
            raise BadInput("'channels' must be a list of channel names")
        return tuple(str(c) for c in channels)
    from fastpush.pipeline.steps import post_channels

    return post_channels(data)


_RESULTS: dict[int, bytes] = {}


def short_result(published: int) -> bytes:
    """The job result the glue finishes with: ``{"ok":true,"published":N}``."""
    out = _RESULTS.get(published)
    if out is None:
        out = _RESULTS[published] = b'{"ok":true,"published":%d}' % published
    return out


class Pipeline:
    """parse -> compute -> publish, with one overridable hook per step.

    ``compute`` runs ``route`` on the parsed data, then ``clean``,
    ``anonymize``, ``secure``, ``transform``, ``format`` and ``compress``.
    A mixin overrides one hook (and calls ``super()`` to chain with another
    mixin that overrides the same hook).  Hooks raise ``BadInput`` for data
    they cannot handle.

    The publisher is, in order: the ``publisher`` argument; the one a publisher
    mixin's ``make_publisher`` builds; the in-process publish the glue passes
    as ``inprocess`` when it runs inside ``fastpush serve``; an HTTP publisher
    to ``publish_url``.
    """

    #: Channels every message goes to, in addition to what ``route`` finds.
    channels: Sequence[str] = ()
    #: push-stream Event-Type for every message (None: none sent).
    event_type_name: str | None = None

    def __init__(
        self,
        *,
        publisher: Publisher | None = None,
        publish_url: str | None = None,
        inprocess: InProcessPublish | None = None,
        **options: Any,
    ) -> None:
        self.publish_url = publish_url or getattr(
            type(self), "default_publish_url", None
        )
        self.inprocess = inprocess
        self.options = options
        self.publisher = publisher if publisher is not None else self.make_publisher()

    def make_publisher(self) -> Publisher:
        if self.inprocess is not None:
            from fastpush.pipeline.publishers import InProcessPublisher

            return InProcessPublisher(self.inprocess)
        if self.publish_url:
            from fastpush.pipeline.http import HTTPPublisher

            return HTTPPublisher(self.publish_url, **self.options.get("http", {}))
        raise PipelineError(
            f"{type(self).__name__} has no publisher: mix in one, or pass "
            "publisher=, publish_url= or inprocess="
        )

    # Stage 1 -----------------------------------------------------------------

    def parse(self, raw: bytes) -> Any:
        return raw

    # Stage 2 -----------------------------------------------------------------

    def compute(self, data: Any) -> list[Message]:
        channels = self.route(data)
        if self.channels:
            channels = (*channels, *self.channels)
        if not channels:
            raise BadInput("the job maps to no channel")
        data = self.clean(data)
        data = self.anonymize(data)
        data = self.secure(data)
        data = self.transform(data)
        body = self.compress(self.format(data))
        return [Message(channels, body, self.event_id(data), self.event_type(data))]

    def route(self, data: Any) -> tuple[str, ...]:
        return default_route(data)

    def clean(self, data: Any) -> Any:
        return data

    def anonymize(self, data: Any) -> Any:
        return data

    def secure(self, data: Any) -> Any:
        return data

    def transform(self, data: Any) -> Any:
        return data

    def format(self, data: Any) -> bytes:
        return to_bytes(data)

    def compress(self, body: bytes) -> bytes:
        return body

    def event_id(self, data: Any) -> str | None:
        return None

    def event_type(self, data: Any) -> str | None:
        return self.event_type_name

    def process(self, raw: bytes) -> list[Message]:
        """parse + compute: everything but the publishing (synchronous)."""
        return self.compute(self.parse(raw))

    def result(self, messages: Sequence[Message]) -> bytes | None:
        """What the job is finished with (None: finish without a notice)."""
        return short_result(sum(len(m.channels) for m in messages))

    # Stage 3 -----------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> PublishOutcome:
        return await self.publisher.publish(messages)

    async def handle(self, raw: bytes) -> list[Message]:
        """Process and publish one body; raises the first PublishError."""
        messages = self.process(raw)
        for outcome in await self.publish(messages):
            if outcome is not None:
                raise outcome
        return messages

    async def start(self) -> None:
        await self.publisher.start()

    async def aclose(self) -> None:
        await self.publisher.aclose()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ComposedPipeline(Pipeline):
    """A pipeline made of plain callables (see ``compose``)."""

    def __init__(
        self,
        parse: Parser,
        steps: Sequence[Step],
        *,
        route: Router = default_route,
        event_type: str | None = None,
        event_id: Callable[[Any], str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        self._parse = parse
        self._steps = tuple(steps)
        self._route = route
        self._event_id = event_id
        self.event_type_name = event_type
        super().__init__(**kwargs)

    def parse(self, raw: bytes) -> Any:
        return self._parse(raw)

    def route(self, data: Any) -> tuple[str, ...]:
        return tuple(self._route(data))

    def compute(self, data: Any) -> list[Message]:
        channels = self.route(data)
        if not channels:
            raise BadInput("the job maps to no channel")
        for step in self._steps:
            data = step(data)
        event_id = self._event_id(data) if self._event_id else None
        return [Message(channels, to_bytes(data), event_id, self.event_type_name)]


def compose(
    parse: Parser,
    *steps: Step,
    route: Router = default_route,
    publisher: Publisher | None = None,
    publish_url: str | None = None,
    event_type: str | None = None,
    event_id: Callable[[Any], str | None] | None = None,
) -> ComposedPipeline:
    """A pipeline from callables: ``parse(raw)``, then each step in turn; the
    last step's output is the body (bytes, str, or JSON-able data).
    ``route`` maps the *parsed* data to its channels.

    >>> compose(parse_json, clean_post, anonymize, to_client, format_json,
    ...         route=post_channels, publisher=HTTPPublisher(url))
    """
    return ComposedPipeline(
        parse,
        steps,
        route=route,
        event_type=event_type,
        event_id=event_id,
        publisher=publisher,
        publish_url=publish_url,
    )
