"""A synchronous Thoonk job producer, for code that is not asyncio (Django
signal handlers, scripts, Celery tasks).  The same writes as
``JobQueue.put`` (thoonk-protocol.md §8.1), on redis-py's blocking client."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, cast

import redis

from fastpush.thoonk import keys
from fastpush.thoonk.errors import WrongFeedType
from fastpush.thoonk.job import Data, _b


class SyncJobProducer:
    """Puts jobs on one queue; creates the queue (§3) on first use.

    Thread-safe: redis-py's blocking client pools its connections.
    """

    def __init__(
        self,
        queue: str,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: redis.Redis | None = None,
        **kwargs: Any,
    ) -> None:
        self.keys = keys.JobKeys(queue)
        self.redis = (
            client if client is not None else redis.Redis.from_url(url, **kwargs)
        )
        self._owns = client is None
        self._ready = False
        self._lock = threading.Lock()
        self.instance = uuid.uuid4().hex

    def close(self) -> None:
        if self._owns:
            self.redis.close()

    def _ensure_queue(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            name = self.keys.name
            if self.redis.sadd(keys.FEEDS, name):
                with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(self.keys.config, "type", "job")
                    pipe.execute()
                notice = f"{name}\0{self.instance}"
                self.redis.publish(keys.NEWFEED, notice)
                self.redis.publish(keys.CONFFEED, notice)
            else:
                # Another client may be between its SADD and its HSET (§3).
                for _ in range(50):
                    # bytes: the client does not decode replies (redis-py
                    # annotates bytes | str for either setting).
                    ftype = cast(
                        "bytes | None", self.redis.hget(self.keys.config, "type")
                    )
                    if ftype is not None:
                        break
                    time.sleep(0.02)
                if ftype is not None and ftype != b"job":
                    raise WrongFeedType(
                        f"{name!r} is a {ftype.decode()}, not a job queue"
                    )
            self._ready = True

    def put(self, body: Data, priority: bool = False) -> str:
        """One job; returns its id.  thoonk.py's MULTI, with the put notice
        inside it."""
        self._ensure_queue()
        k = self.keys
        job_id = uuid.uuid4().hex
        data = _b(body)
        with self.redis.pipeline(transaction=True) as pipe:
            if priority:
                pipe.rpush(k.ids, job_id)
            else:
                pipe.lpush(k.ids, job_id)
            pipe.incr(k.publishes)
            pipe.hset(k.items, job_id, data)
            pipe.zadd(k.published, {job_id: int(time.time() * 1000)})
            pipe.publish(k.publishes, job_id.encode() + b"\0" + data)
            pipe.execute()
        return job_id
