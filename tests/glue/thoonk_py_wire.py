"""The Redis command sequences of thoonk.py 1.0 (andyet/thoonk.py), replayed
with the synchronous redis-py client.

This is not thoonk.py's code: it is a test double that sends, per operation,
the same commands in the same order and in the same transactions that the
original client sends (traced in /work/shared/thoonk-protocol.md §3, §4, §8),
so that the tests can play an old producer or an old worker next to ours.
thoonk.py itself is Python 2 only.
"""

from __future__ import annotations

import time
import uuid

import redis


class Empty(Exception):
    pass


class OldThoonk:
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)
        self.instance = uuid.uuid4().hex

    def close(self) -> None:
        self.redis.close()

    # create_feed + set_config(new_feed=True)
    def create(
        self, name: str, ftype: str, config: dict[str, str] | None = None
    ) -> bool:
        if not self.redis.sadd("feeds", name):
            return False
        assert self.redis.sismember("feeds", name)
        fields = {**(config or {}), "type": ftype}
        pipe = self.redis.pipeline()
        for k, v in fields.items():
            pipe.hset("feed.config:" + name, k, v)
        pipe.execute()
        self.redis.publish("newfeed", f"{name}\0{self.instance}")
        self.redis.publish("conffeed", f"{name}\0{self.instance}")
        return True

    def job(self, name: str) -> OldJob:
        self.create(name, "job")
        return OldJob(self, name)

    def feed(self, name: str, config: dict[str, str] | None = None) -> OldFeed:
        self.create(name, "feed", config)
        return OldFeed(self, name)


class OldJob:
    NO_RESULT = object()

    def __init__(self, thoonk: OldThoonk, name: str) -> None:
        self.redis = thoonk.redis
        self.ids = f"feed.ids:{name}"
        self.items = f"feed.items:{name}"
        self.publishes = f"feed.publishes:{name}"
        self.published = f"feed.published:{name}"
        self.cancelled = f"feed.cancelled:{name}"
        self.finishes = f"feed.finishes:{name}"
        self.claimed = f"feed.claimed:{name}"
        self.stalled = f"feed.stalled:{name}"
        self.edit = f"feed.edit:{name}"
        self.finish_channel = f"job.finish:{name}"

    def put(self, item: bytes, priority: bool = False) -> str:
        job_id = uuid.uuid4().hex
        pipe = self.redis.pipeline()  # MULTI ... EXEC
        if priority:
            pipe.rpush(self.ids, job_id)
        else:
            pipe.lpush(self.ids, job_id)
        pipe.incr(self.publishes)
        pipe.hset(self.items, job_id, item)
        pipe.zadd(self.published, {job_id: int(time.time() * 1000)})
        results = pipe.execute()
        channel = self.publishes if results[-1] else self.edit
        self.redis.publish(channel, job_id.encode() + b"\0" + item)
        return job_id

    def get(self, timeout: int = 0) -> tuple[str, bytes | None, int]:
        popped = self.redis.brpop(self.ids, timeout)
        if popped is None:
            raise Empty
        job_id = popped[1]
        pipe = self.redis.pipeline()
        pipe.zadd(self.claimed, {job_id: int(time.time() * 1000)})
        pipe.hget(self.items, job_id)
        pipe.hget(self.cancelled, job_id)
        result = pipe.execute()
        self.redis.publish(self.claimed, job_id)
        return job_id.decode(), result[1], 0 if result[2] is None else int(result[2])

    def finish(self, job_id: str, result: object = NO_RESULT) -> None:
        def _finish(pipe: redis.client.Pipeline) -> None:
            if pipe.zrank(self.claimed, job_id) is None:
                return
            pipe.multi()
            pipe.zrem(self.claimed, job_id)
            pipe.hdel(self.cancelled, job_id)
            pipe.zrem(self.published, job_id)
            pipe.incr(self.finishes)
            if result is not self.NO_RESULT:
                assert isinstance(result, bytes)
                pipe.publish(self.finish_channel, job_id.encode() + b"\0" + result)
            pipe.hdel(self.items, job_id)

        self.redis.transaction(_finish, self.claimed)

    def cancel(self, job_id: str) -> None:
        def _cancel(pipe: redis.client.Pipeline) -> None:
            # thoonk.py tests on the client, not on the watching pipe.
            if self.redis.zrank(self.claimed, job_id) is None:
                return
            pipe.multi()
            pipe.hincrby(self.cancelled, job_id, 1)
            pipe.lpush(self.ids, job_id)
            pipe.zrem(self.claimed, job_id)

        self.redis.transaction(_cancel, self.claimed)

    def stall(self, job_id: str) -> None:
        def _stall(pipe: redis.client.Pipeline) -> None:
            if pipe.zrank(self.claimed, job_id) is None:
                return
            pipe.multi()
            pipe.zrem(self.claimed, job_id)
            pipe.hdel(self.cancelled, job_id)
            pipe.sadd(self.stalled, job_id)
            pipe.zrem(self.published, job_id)

        self.redis.transaction(_stall, self.claimed)

    def retry(self, job_id: str) -> None:
        def _retry(pipe: redis.client.Pipeline) -> None:
            pipe.sismember(self.stalled, job_id)  # its test never fails (§8.6)
            pipe.multi()
            pipe.srem(self.stalled, job_id)
            pipe.lpush(self.ids, job_id)
            pipe.zadd(self.published, {job_id: time.time()})

        self.redis.transaction(_retry, self.stalled)

    def get_ids(self) -> list[str]:
        return [i.decode() for i in self.redis.hkeys(self.items)]


class OldFeed:
    def __init__(self, thoonk: OldThoonk, name: str) -> None:
        self.redis = thoonk.redis
        self.ids = f"feed.ids:{name}"
        self.items = f"feed.items:{name}"
        self.config = f"feed.config:{name}"
        self.publishes = f"feed.publishes:{name}"
        self.publish_channel = f"feed.publish:{name}"
        self.edit = f"feed.edit:{name}"
        self.retract = f"feed.retract:{name}"

    def publish(self, item: bytes, item_id: str | None = None) -> str:
        pid = item_id or uuid.uuid4().hex

        def _publish(pipe: redis.client.Pipeline) -> None:
            limit = int(pipe.hget(self.config, "max_length") or 0)
            if limit > 0:
                delete_ids = pipe.zrange(self.ids, 0, -limit)
                pipe.multi()
                for old in delete_ids:
                    if old.decode() != pid:
                        pipe.zrem(self.ids, old)
                        pipe.hdel(self.items, old)
                        pipe.publish(self.retract, old)
            else:
                pipe.multi()
            pipe.zadd(self.ids, {pid: time.time()})
            pipe.incr(self.publishes)
            pipe.hset(self.items, pid, item)

        results = self.redis.transaction(_publish, self.ids)
        channel = self.publish_channel if results[-3] else self.edit
        self.redis.publish(channel, pid.encode() + b"\0" + item)
        return pid
