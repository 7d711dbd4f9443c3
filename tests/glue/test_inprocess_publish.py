"""The publish `fastpush serve` hands the glue when it runs in the server."""

from __future__ import annotations

import asyncio

import pytest

from fastpush.config import parse_config
from fastpush.server import App, PublishError


@pytest.fixture
def app() -> App:
    loop = asyncio.new_event_loop()
    config = parse_config(
        '[settings]\nstore_messages = true\nshared_memory_size = "2k"\n'
    )
    yield App(config, loop)
    loop.close()


def test_one_worker_publishes_at_once_with_the_pipelines_str_event_fields(
    app: App,
) -> None:
    publish = app.glue_publisher()
    assert publish("thread:1", b"hello", "ev-1", "post") is None
    (msg,) = app.registry.get("thread:1").stored_messages()
    assert (msg.text, msg.event_id, msg.event_type) == (b"hello", b"ev-1", b"post")


def test_a_refused_message_raises_so_the_job_is_not_finished(app: App) -> None:
    publish = app.glue_publisher()
    with pytest.raises(PublishError) as err:
        publish("thread:2", b"x" * 4096)
    assert err.value.status == 500
