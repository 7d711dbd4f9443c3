"""The pipeline: the talk's mixin pipelines, composition, and the steps."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpush.pipeline import (
    AnonymizeMixin,
    BadInput,
    CompressMixin,
    DefaultPipeline,
    HTTPPublisher,
    HTTPPublisherMixin,
    JSONAnnonFilePipeline,
    JSONAnnonHTTPPipeline,
    JSONParserMixin,
    JSONSecureHTTPPipeline,
    Message,
    Pipeline,
    PipelineError,
    RecordingPublisher,
    compose,
    steps,
)
from fastpush.pipeline.examples import disqus_composed
from fastpush.pipeline.publishers import FilePublisher, InProcessPublisher

POST = {
    "id": 7,
    "forum": "cats",
    "thread": 12,
    "author": 42,
    "author_name": "Ann <admin>",
    "message": "  <b>hi</b> & bye  ",
    "email": "ann@example.com",
    "ip_address": "10.0.0.1",
}
RAW = json.dumps(POST).encode()
CHANNELS = ("forum:cats", "thread:12", "user:42", "post:7")


def test_the_talks_pipelines_are_a_line_each() -> None:
    class MyAnnon(JSONParserMixin, AnonymizeMixin, HTTPPublisherMixin):
        pass

    p = MyAnnon(publish_url="http://127.0.0.1:1/pub")
    assert isinstance(p.publisher, HTTPPublisher)
    assert p.publisher.port == 1
    (msg,) = p.process(RAW)
    body = json.loads(msg.body)
    # Anonymous: no author id or name, no private field, no user channel.
    assert body["author"].startswith("anon-") and "42" not in body["author"]
    assert body["author_name"] == "Anonymous"
    assert "email" not in body and "ip_address" not in body
    assert msg.channels == ("forum:cats", "thread:12", "post:7")
    assert JSONAnnonHTTPPipeline(publish_url="http://h:2/pub").process(RAW) == [msg]


def test_secure_pipeline_escapes_text_and_drops_private_fields() -> None:
    (msg,) = JSONSecureHTTPPipeline().process(RAW)
    body = json.loads(msg.body)
    assert body["message"] == "  &lt;b&gt;hi&lt;/b&gt; &amp; bye  "
    assert body["author_name"] == "Ann &lt;admin&gt;"
    assert body["author"] == 42
    assert "email" not in body and "ip_address" not in body
    assert msg.channels == CHANNELS


def test_file_pipeline_appends_json_lines(tmp_path: Any, run: Any) -> None:
    path = tmp_path / "out.jsonl"
    p = JSONAnnonFilePipeline(path=str(path))
    assert isinstance(p.publisher, FilePublisher)

    async def go() -> None:
        async with p:
            await p.handle(RAW)
            await p.handle(RAW)

    run(go())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2
    assert lines[0]["channels"] == ["forum:cats", "thread:12", "post:7"]
    assert json.loads(lines[0]["body"])["author_name"] == "Anonymous"


def test_default_pipeline_formats_a_post_once_for_its_four_channels() -> None:
    p = DefaultPipeline(publisher=RecordingPublisher())
    (msg,) = p.process(RAW)
    assert msg.channels == CHANNELS
    assert json.loads(msg.body) == {
        "type": "post",
        "action": "create",
        "post": {
            "id": "7",
            "forum": "cats",
            "thread": "12",
            "author": {"id": "42", "name": "Ann <admin>"},
            "message": "<b>hi</b> & bye",
        },
    }
    assert b"ann@example.com" not in msg.body  # clean keeps known fields only
    assert p.result([msg]) == b'{"ok":true,"published":4}'


def test_composition_of_callables_matches_the_mixin_form() -> None:
    rec = RecordingPublisher()
    composed = disqus_composed(publisher=rec)
    assert composed.process(RAW) == DefaultPipeline(publisher=rec).process(RAW)
    anon = compose(
        steps.parse_json,
        steps.clean_post,
        steps.anonymize,
        steps.to_client,
        route=lambda d: steps.post_channels(d, user=False),
        publisher=rec,
        event_type="post",
    )
    (msg,) = anon.process(RAW)
    assert msg.event_type == "post"
    assert msg.channels == ("forum:cats", "thread:12", "post:7")
    assert json.loads(msg.body)["post"]["author"]["name"] == "Anonymous"


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"id": 1, "forum": "f", "thread": 2, "author": 3}', "'message'"),
        (
            b'{"id": 1, "forum": "a/b", "thread": 2, "author": 3, "message": ""}',
            "usable id",
        ),
        (
            b'{"id": true, "forum": "f", "thread": 2, "author": 3, "message": ""}',
            "int or",
        ),
        (b'{"id": 1, "forum": "f", "thread": 2, "author": 3, "message": 5}', "string"),
        (
            b'{"id":1,"forum":"f","thread":2,"author":3,"message":"","action":"x"}',
            "action",
        ),
    ],
)
def test_bad_posts_are_bad_input(raw: bytes, why: str) -> None:
    with pytest.raises(BadInput, match=why):
        DefaultPipeline(publisher=RecordingPublisher()).process(raw)


def test_explicit_channels_and_class_channels_route_any_payload() -> None:
    class Firehose(JSONParserMixin):
        channels = ("all",)

    p = Firehose(publisher=RecordingPublisher())
    (msg,) = p.process(b'{"channels": ["a", "b"], "x": 1}')
    assert msg.channels == ("a", "b", "all")
    with pytest.raises(BadInput):
        p.process(b'{"channels": "a"}')


def test_compress_once_round_trips() -> None:
    class Zipped(JSONParserMixin, CompressMixin):
        compression = "gzip"

    (msg,) = Zipped(publisher=RecordingPublisher()).process(RAW)
    assert json.loads(steps.decompress(msg.body, "gzip")) == POST
    for method in ("deflate", "zlib"):
        packed = steps.compress(b"x" * 1000, method, b64=False)
        assert len(packed) < 100
        assert steps.decompress(packed, method, b64=False) == b"x" * 1000


def test_a_pipeline_without_publisher_says_so() -> None:
    with pytest.raises(PipelineError, match="no publisher"):
        Pipeline()

    async def publish(channel: str, body: bytes, *a: Any) -> None:
        pass

    assert isinstance(Pipeline(inprocess=publish).publisher, InProcessPublisher)
    assert isinstance(Pipeline(publish_url="http://x/pub").publisher, HTTPPublisher)


def test_message_only_keeps_body_and_event() -> None:
    m = Message(("a", "b"), b"x", "id1", "t")
    assert m.only(("b",)) == Message(("b",), b"x", "id1", "t")


class _Unfused(DefaultPipeline):
    def clean(self, data: Any) -> Any:  # any override turns the one-pass path off
        return super().clean(data)


_ids = st.one_of(st.integers(-(10**12), 10**12), st.text(min_size=0, max_size=12))
_posts = st.fixed_dictionaries(
    {
        "id": _ids,
        "forum": _ids,
        "thread": _ids,
        "message": st.one_of(st.none(), st.text()),
    },
    optional={
        "author": st.one_of(
            _ids,
            st.none(),
            st.fixed_dictionaries(
                {"id": st.one_of(_ids, st.none()), "name": st.text()}
            ),
        ),
        "author_name": st.one_of(st.none(), st.text()),
        "action": st.sampled_from(["create", "update", "delete", "bogus"]),
        "created_at": st.one_of(st.floats(allow_nan=False), st.text()),
        "parent": st.one_of(st.none(), st.integers()),
        "email": st.text(),
    },
)


@settings(max_examples=300, deadline=None)
@given(_posts)
def test_the_one_pass_default_pipeline_matches_the_hook_chain(
    post: dict[str, Any],
) -> None:
    raw = json.dumps(post).encode()
    fast, slow = (
        DefaultPipeline(publisher=RecordingPublisher()),
        _Unfused(publisher=RecordingPublisher()),
    )
    assert fast._fused and not slow._fused
    try:
        expected = slow.process(raw)
    except BadInput:
        with pytest.raises(BadInput):
            fast.process(raw)
        return
    assert fast.process(raw) == expected
