"""The glue's composable pipeline: parse -> compute -> publish.

Pure Python (no compiled core needed).  See fastpush.pipeline.base for the
contract and docs/glue.md for a tour.
"""

from __future__ import annotations

from fastpush.pipeline.base import (
    BadInput,
    ComposedPipeline,
    InProcessPublish,
    Message,
    Pipeline,
    PipelineError,
    Publisher,
    PublishError,
    compose,
)
from fastpush.pipeline.examples import (
    DefaultPipeline,
    DisqusPipeline,
    JSONAnnonFilePipeline,
    JSONAnnonHTTPPipeline,
    JSONSecureHTTPPipeline,
)
from fastpush.pipeline.http import HTTPPublisher
from fastpush.pipeline.mixins import (
    AnonymizeMixin,
    ClientSchemaMixin,
    CompressMixin,
    DisqusMultiplexerMixin,
    FilePublisherMixin,
    HTTPPublisherMixin,
    InProcessPublisherMixin,
    JSONParserMixin,
    PostCleanMixin,
    RedisPublisherMixin,
    SecureMixin,
)
from fastpush.pipeline.publishers import (
    FilePublisher,
    InProcessPublisher,
    RecordingPublisher,
    RedisPublisher,
    TeePublisher,
)

__all__ = [
    "AnonymizeMixin",
    "BadInput",
    "ClientSchemaMixin",
    "ComposedPipeline",
    "CompressMixin",
    "DefaultPipeline",
    "DisqusMultiplexerMixin",
    "DisqusPipeline",
    "FilePublisher",
    "FilePublisherMixin",
    "HTTPPublisher",
    "HTTPPublisherMixin",
    "InProcessPublish",
    "InProcessPublisher",
    "InProcessPublisherMixin",
    "JSONAnnonFilePipeline",
    "JSONAnnonHTTPPipeline",
    "JSONParserMixin",
    "JSONSecureHTTPPipeline",
    "Message",
    "Pipeline",
    "PipelineError",
    "PostCleanMixin",
    "PublishError",
    "Publisher",
    "RecordingPublisher",
    "RedisPublisher",
    "RedisPublisherMixin",
    "SecureMixin",
    "TeePublisher",
    "compose",
]
