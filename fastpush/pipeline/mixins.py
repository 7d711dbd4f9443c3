"""The talk's mixins: each overrides one hook of ``Pipeline``.

    class JSONAnnonHTTPPipeline(JSONParserMixin, AnonymizeMixin, HTTPPublisherMixin):
        pass

Every mixin subclasses ``Pipeline``, so a class made only of mixins is a
complete pipeline.  Mixins that override the same hook chain through
``super()`` (left to right in the class statement runs outermost first).
"""

from __future__ import annotations

from typing import Any

from fastpush.pipeline import steps
from fastpush.pipeline.base import Pipeline, Publisher

# Parse ------------------------------------------------------------------------


class JSONParserMixin(Pipeline):
    """Job bodies are JSON; anything else is bad input."""

    def parse(self, raw: bytes) -> Any:
        return steps.parse_json(raw)


# Compute ----------------------------------------------------------------------


class PostCleanMixin(Pipeline):
    """Bodies are posts: validate them and keep only the known fields."""

    def clean(self, data: Any) -> Any:
        return steps.clean_post(super().clean(data))


class DisqusMultiplexerMixin(Pipeline):
    """One post to four channels: forum:<forum>, thread:<thread>,
    user:<author> and post:<id>.  ``route_user = False`` drops the user
    channel."""

    route_user = True

    def route(self, data: Any) -> tuple[str, ...]:
        return steps.post_channels(data, user=self.route_user)


class AnonymizeMixin(Pipeline):
    """Nobody learns who wrote it: the author becomes a pseudonym, private
    fields go, and the author's own channel is not published to (it would
    name them)."""

    route_user = False

    def anonymize(self, data: Any) -> Any:
        data = super().anonymize(data)
        if isinstance(data, dict):
            if "author" in data and "author_name" not in data:
                data = {**data, "author_name": None}
            return steps.anonymize(data)
        return data

    def route(self, data: Any) -> tuple[str, ...]:
        if isinstance(data, dict) and "channels" not in data:
            return steps.post_channels(data, user=False)
        return super().route(data)


class SecureMixin(Pipeline):
    """Safe to insert into a page: private fields dropped, text escaped."""

    def secure(self, data: Any) -> Any:
        data = super().secure(data)
        return steps.secure(data) if isinstance(data, dict) else data


class ClientSchemaMixin(Pipeline):
    """The schema transform: a cleaned post to the client's event format."""

    def transform(self, data: Any) -> Any:
        return steps.to_client(super().transform(data))


class CompressMixin(Pipeline):
    """Compress the formatted body once, for every subscriber."""

    compression = "deflate"
    compression_level = 6
    compression_base64 = True

    def compress(self, body: bytes) -> bytes:
        return steps.compress(
            super().compress(body),
            self.compression,
            self.compression_level,
            self.compression_base64,
        )


# Publish ----------------------------------------------------------------------


class HTTPPublisherMixin(Pipeline):
    """POST to a push-stream compatible /pub (``publish_url=``, default
    ``default_publish_url``); HTTP options from ``http={...}``."""

    default_publish_url = "http://127.0.0.1:9080/pub"

    def make_publisher(self) -> Publisher:
        from fastpush.pipeline.http import HTTPPublisher

        url = self.publish_url or self.default_publish_url
        return HTTPPublisher(url, **self.options.get("http", {}))


class InProcessPublisherMixin(Pipeline):
    """Publish through the server of this process (glue inside serve)."""

    def make_publisher(self) -> Publisher:
        if self.inprocess is None:
            return super().make_publisher()
        from fastpush.pipeline.publishers import InProcessPublisher

        return InProcessPublisher(self.inprocess)


class RedisPublisherMixin(Pipeline):
    """Publish to Redis pub/sub (``redis_url=``, ``channel_prefix=``,
    ``firehose=``)."""

    def make_publisher(self) -> Publisher:
        from fastpush.pipeline.publishers import RedisPublisher

        o = self.options
        return RedisPublisher(
            o.get("redis_url", "redis://127.0.0.1:6379/0"),
            prefix=o.get("channel_prefix", ""),
            firehose=o.get("firehose"),
        )


class FilePublisherMixin(Pipeline):
    """Append JSON lines to ``path=`` (default ``default_path``)."""

    default_path = "fastpush-messages.jsonl"

    def make_publisher(self) -> Publisher:
        from fastpush.pipeline.publishers import FilePublisher

        o = self.options
        return FilePublisher(
            o.get("path", self.default_path), fsync=o.get("fsync", False)
        )
