"""fastpush.contrib.django: model hooks put jobs the glue consumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from helpers import queue_at, running_glue  # noqa: E402
from pushstream_stub import StubServer  # noqa: E402


@pytest.fixture(scope="module")
def django_models() -> Iterator[Any]:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={
                "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
            },
            INSTALLED_APPS=["djangoapp"],
            USE_TZ=True,
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        )
        django.setup()
    from django.db import connection
    from djangoapp import models

    with connection.schema_editor() as editor:
        editor.create_model(models.Forum)
        editor.create_model(models.Post)
    try:
        yield models
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(models.Post)
            editor.delete_model(models.Forum)
        connection.close()


def test_saves_and_deletes_become_jobs_the_glue_publishes(
    django_models: Any, redis_url: str, run: Any
) -> None:
    from django.db import transaction

    from fastpush.contrib.django import close_producers, disconnect_model, push_model

    Forum, Post = django_models.Forum, django_models.Post
    push_model(Post, queue="posts", redis_url=redis_url)  # the two-line setup
    try:
        forum = Forum.objects.create(slug="cats")  # not connected: no job
        post = Post.objects.create(forum=forum, thread=12, author=42, message="hi")
        post.message = "hi, edited"
        post.save()
        with pytest.raises(RuntimeError), transaction.atomic():
            Post.objects.create(
                forum=forum, thread=12, author=42, message="rolled back"
            )
            raise RuntimeError
        post_id = post.pk
        post.delete()
    finally:
        disconnect_model(Post)
        close_producers()

    async def go() -> list[Any]:
        async with queue_at(redis_url) as q:
            bodies = [
                json.loads(await q.item(i) or b"") for i in reversed(await q.queued())
            ]
            assert [b["action"] for b in bodies] == ["create", "update", "delete"]
            assert bodies[0]["model"] == "djangoapp.post"
            assert {
                k: bodies[1][k] for k in ("id", "forum", "thread", "author", "message")
            } == {
                "id": post_id,
                "forum": forum.pk,
                "thread": 12,
                "author": 42,
                "message": "hi, edited",
            }
            async with (
                StubServer() as srv,
                running_glue(redis_url, publish_url=srv.url),
            ):
                await srv.wait_for(12)
            assert (await q.counts())["finishes"] == 3
            return [
                json.loads(p.body)
                for p in srv.published
                if p.channel.startswith("post:")
            ]

    published = run(go())
    assert [m["action"] for m in published] == ["create", "update", "delete"]
    assert published[1]["post"]["message"] == "hi, edited"
    assert published[2]["post"]["message"] == ""  # a delete carries no text
