"""Django: put a Thoonk job for every saved or deleted model instance.

The first step of the talk's pipeline: the application's own save and delete
hooks feed the queue the glue consumes.  Two lines, in an AppConfig.ready()::

    from fastpush.contrib.django import push_model
    push_model(Post)

Each ``post_save`` / ``post_delete`` of ``Post`` then puts a job whose body is
the instance as JSON, ForeignKeys as their ids, plus ``"action"`` (``create``,
``update`` or ``delete``) and ``"model"`` (``app_label.ModelName``)::

    {"id": 7, "forum": 3, "thread": 12, "author": 42, "message": "...",
     "action": "create", "model": "forum.post"}

which is what the glue's default pipeline expects of a post.  The job is put
after the transaction commits (``transaction.on_commit``), so the glue never
sees a row that was rolled back.  Settings (all optional):

    FASTPUSH_REDIS_URL = "redis://127.0.0.1:6379/0"
    FASTPUSH_QUEUE = "fastpush"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, router, transaction
from django.db.models.signals import post_delete, post_save

from fastpush.thoonk.sync import SyncJobProducer

__all__ = [
    "close_producers",
    "disconnect_model",
    "instance_to_dict",
    "producer_for",
    "push_model",
]

Serializer = Callable[[models.Model, str], Any]

_producers: dict[tuple[str, str], SyncJobProducer] = {}


def producer_for(queue: str | None = None, url: str | None = None) -> SyncJobProducer:
    """One producer per (queue, Redis URL) per process."""
    # Not `queue or getattr(...)`: mypy types that `str | Any | None`.
    if not queue:
        queue = getattr(settings, "FASTPUSH_QUEUE", "fastpush")
    if not url:
        url = getattr(settings, "FASTPUSH_REDIS_URL", "redis://127.0.0.1:6379/0")
    key = (queue, url)
    producer = _producers.get(key)
    if producer is None:
        producer = _producers[key] = SyncJobProducer(queue, url)
    return producer


def close_producers() -> None:
    """Close the Redis clients of every producer (tests, worker shutdown)."""
    while _producers:
        _, producer = _producers.popitem()
        producer.close()


def instance_to_dict(
    instance: models.Model, action: str, fields: Iterable[str] | None = None
) -> dict[str, Any]:
    """Concrete fields by name; a ForeignKey as the related id (``author`` ->
    ``author_id``'s value) so nothing is fetched from the database."""
    wanted = set(fields) if fields is not None else None
    data: dict[str, Any] = {}
    for field in instance._meta.concrete_fields:
        if wanted is not None and field.name not in wanted and not field.primary_key:
            continue
        data[field.name] = getattr(instance, field.attname)
    data["id"] = instance.pk
    data["action"] = action
    data["model"] = instance._meta.label_lower
    return data


def push_model(
    model: type[models.Model],
    *,
    queue: str | None = None,
    redis_url: str | None = None,
    fields: Iterable[str] | None = None,
    serializer: Serializer | None = None,
    priority: bool = False,
    on_commit: bool = True,
) -> None:
    """Put a job on ``queue`` for each save and delete of ``model``.

    ``serializer(instance, action)`` returns the job body (bytes, str, or
    JSON-able data); the default is ``instance_to_dict`` limited to
    ``fields``.  Connecting the same model twice replaces the first hooks.
    """
    field_list = list(fields) if fields is not None else None

    def body_of(instance: models.Model, action: str) -> bytes:
        if serializer is not None:
            data = serializer(instance, action)
        else:
            data = instance_to_dict(instance, action, field_list)
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":")).encode()

    def put(instance: models.Model, action: str) -> None:
        # The body is made now: after a delete, the instance is gone later.
        body = body_of(instance, action)
        producer = producer_for(queue, redis_url)

        def send() -> None:
            producer.put(body, priority)

        if on_commit:
            # Outside an atomic block this runs at once (autocommit).
            transaction.on_commit(send, using=router.db_for_write(type(instance)))
        else:
            send()

    def saved(
        sender: type[models.Model], instance: models.Model, created: bool, **kw: Any
    ) -> None:
        if kw.get("raw"):  # fixtures being loaded: not a user's edit
            return
        put(instance, "create" if created else "update")

    def deleted(sender: type[models.Model], instance: models.Model, **kw: Any) -> None:
        put(instance, "delete")

    uid = _uid(model)
    disconnect_model(model)  # connect() would keep the old hooks otherwise
    post_save.connect(saved, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(deleted, sender=model, weak=False, dispatch_uid=uid)


def disconnect_model(model: type[models.Model]) -> None:
    uid = _uid(model)
    post_save.disconnect(sender=model, dispatch_uid=uid)
    post_delete.disconnect(sender=model, dispatch_uid=uid)


def _uid(model: type[models.Model]) -> str:
    return f"fastpush.push_model:{model._meta.label_lower}"
