"""The pipelines of the talk, and the built-in default.  A few lines each."""

from __future__ import annotations

from fastpush.pipeline import steps
from fastpush.pipeline.base import ComposedPipeline, compose
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
