"""The pipelines of the talk, and the built-in default.  A few lines each."""

from __future__ import annotations

from typing import Any

from fastpush.pipeline import steps
from fastpush.pipeline.base import ComposedPipeline, Message, Pipeline, compose
from fastpush.pipeline.mixins import (
    AnonymizeMixin,
    ClientSchemaMixin,
    DisqusMultiplexerMixin,
    FilePublisherMixin,
    HTTPPublisherMixin,
    JSONParserMixin,
    PostCleanMixin,
    SecureMixin,
)

_HOOKS = (
    "parse",
    "compute",
    "route",
    "clean",
    "anonymize",
    "secure",
    "transform",
    "format",
    "compress",
    "event_id",
    "event_type",
)
assert all(hasattr(Pipeline, hook) for hook in _HOOKS)


class JSONAnnonHTTPPipeline(JSONParserMixin, AnonymizeMixin, HTTPPublisherMixin):
    """JSON in, author hidden, POSTed to push-stream."""


class JSONSecureHTTPPipeline(JSONParserMixin, SecureMixin, HTTPPublisherMixin):
    """JSON in, private fields dropped and text escaped, POSTed to push-stream."""


class JSONAnnonFilePipeline(JSONParserMixin, AnonymizeMixin, FilePublisherMixin):
    """JSON in, author hidden, appended to a file."""


class DisqusPipeline(
    JSONParserMixin, PostCleanMixin, DisqusMultiplexerMixin, ClientSchemaMixin
):
    """The default: a JSON post, cleaned, in the client format, to its forum,
    thread, user and post channels.  No publisher mixin: the glue gives it the
    in-process publisher inside ``fastpush serve``, else HTTP to
    ``--publish-url``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Unless a subclass changed a step, compute in one pass: the same
        # bytes as the hook chain (tested), a third of the time.
        cls = type(self)
        self._fused = all(
            getattr(cls, hook) is getattr(DisqusPipeline, hook) for hook in _HOOKS
        )

    def compute(self, data: Any) -> list[Message]:
        if not self._fused:
            return super().compute(data)
        post = steps.clean_post(data)
        author = post["author"]
        if author is not None and self.route_user:
            channels: tuple[str, ...] = (
                "forum:" + post["forum"],
                "thread:" + post["thread"],
                "user:" + author,
                "post:" + post["id"],
            )
        else:
            channels = (
                "forum:" + post["forum"],
                "thread:" + post["thread"],
                "post:" + post["id"],
            )
        if self.channels:
            channels = (*channels, *self.channels)
        return [Message(channels, steps.client_json(post), None, self.event_type_name)]


DefaultPipeline = DisqusPipeline


def disqus_composed(**kwargs: object) -> ComposedPipeline:
    """``DisqusPipeline`` as plain composition of the same steps."""
    return compose(
        steps.parse_json,
        steps.clean_post,
        steps.to_client,
        steps.format_json,
        route=steps.post_channels,
        **kwargs,  # type: ignore[arg-type]
    )
