"""Thoonk job queues: producer and consumer (thoonk-protocol.md §7-§10, §14).

What lands in Redis is exactly what thoonk.py writes for the same operation;
what differs is how it is sent:

* put is thoonk.py's MULTI (LPUSH/RPUSH, INCR, HSET, ZADD) with the
  ``feed.publishes`` notice moved inside the transaction (§15.9), and
  ``put_many`` sends many such puts in one MULTI, one round trip;
* claim pops, records and reads in one script, for many jobs at once (§15.1),
  and waiting for work uses ``BLMOVE q q RIGHT RIGHT``, which changes nothing;
* finish, cancel and stall take many jobs per script call, check that the claim
  is still ours (§15.3), and keep thoonk.py's per-job writes and order;
* a lease reaper gives abandoned claims back as ordinary cancels (§15.2).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Union, cast

from redis.exceptions import ResponseError

from fastpush.thoonk import scripts
from fastpush.thoonk.errors import Empty
from fastpush.thoonk.keys import JobKeys

if TYPE_CHECKING:
    from fastpush.thoonk.client import Thoonk
    from fastpush.thoonk.listener import FinishListener

Data = Union[bytes, str]

#: Outcome codes of finish/cancel/stall/touch, per job.
OK = 1
NOT_CLAIMED = 0
CLAIMED_BY_OTHER = -1

# Replies are bytes (client.connect sets decode_responses=False); redis-py
# annotates them ``bytes | str`` for either setting, hence the casts below.


def _b(value: Data) -> bytes:
    # Ids are opaque: a str id round-trips through surrogateescape, so an id
    # that is not UTF-8 (thoonk.js lets callers choose ids) is sent back as the
    # very bytes it was read as.
    return (
        value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    )


class Job:
    """A claimed job.  ``attempts`` is the Thoonk cancel count (0 on the first
    run); ``score`` is the claim time we wrote, used to prove ownership."""

    __slots__ = ("raw_id", "body", "attempts", "score")

    def __init__(self, raw_id: bytes, body: bytes, attempts: int, score: bytes) -> None:
        self.raw_id = raw_id
        self.body = body
        self.attempts = attempts
        self.score = score

    @property
    def id(self) -> str:
        return self.raw_id.decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"<Job {self.id} attempts={self.attempts} {len(self.body)}B>"


JobRef = Union[Job, Data]


def _ref(job: JobRef) -> tuple[bytes, bytes]:
    """(id, claim score or b'' when unknown) for the ownership check."""
    if isinstance(job, Job):
        return job.raw_id, job.score
    return _b(job), b""


class JobQueue:
    """One Thoonk job queue.  Get one with ``await thoonk.job(name)``.

    ``claim_notice`` keeps sending thoonk.py's ``feed.claimed:<q>`` notice on
    each claim, for listeners that watch claims (§14: optional).
    """

    def __init__(self, thoonk: Thoonk, name: str, *, claim_notice: bool = True) -> None:
        self.thoonk = thoonk
        self.redis = thoonk.redis
        self.name = name
        self.keys = JobKeys(name)
        self.claim_notice = claim_notice
        self._blmove = True  # cleared if the server is older than 6.2
        r = self.redis
        self._put = r.register_script(scripts.PUT)
        self._claim = r.register_script(scripts.CLAIM)
        self._finish = r.register_script(scripts.FINISH)
        self._cancel = r.register_script(scripts.CANCEL)
        self._stall = r.register_script(scripts.STALL)
        self._retry = r.register_script(scripts.RETRY)
        self._reap = r.register_script(scripts.REAP)
        self._touch = r.register_script(scripts.TOUCH)

    # Producer ----------------------------------------------------------------

    async def put(self, body: Data, priority: bool = False) -> str:
        """Queue one job; returns its id (``uuid4().hex``, like thoonk.py).

        Exactly thoonk.py's transaction: MULTI, LPUSH (RPUSH when
        ``priority``) feed.ids, INCR feed.publishes, HSET feed.items, ZADD
        feed.published <now_ms>, EXEC; and the ``feed.publishes`` notice
        ``<id>\\0<body>``, which we send inside the transaction (§15.9).
        """
        k = self.keys
        job_id = uuid.uuid4().hex
        data = _b(body)
        async with self.redis.pipeline(transaction=True) as pipe:
            if priority:
                pipe.rpush(k.ids, job_id)
            else:
                pipe.lpush(k.ids, job_id)
            pipe.incr(k.publishes)
            pipe.hset(k.items, job_id, data)
            pipe.zadd(k.published, {job_id: int(time.time() * 1000)})
            pipe.publish(k.publishes, job_id.encode() + b"\0" + data)
            await pipe.execute()
        return job_id

    async def put_many(
        self, bodies: Iterable[Data], priority: bool = False
    ) -> list[str]:
        """Queue several jobs in one round trip.

        The same writes as ``put`` for each job, in one script (a bulk
        producer spends its time in the client, not in Redis, with one
        MULTI of five commands per job).  Returns the ids in order.
        """
        k = self.keys
        ids: list[str] = []
        args: list[Data | int] = [
            "RPUSH" if priority else "LPUSH",
            int(time.time() * 1000),
        ]
        for body in bodies:
            job_id = uuid.uuid4().hex
            ids.append(job_id)
            args += (job_id, _b(body))
        if ids:
            await self._put(keys=(k.ids, k.publishes, k.items, k.published), args=args)
        return ids

    def results(self) -> FinishListener:
        """A listener for ``job.finish:<q>`` results; enter it before putting
        (pub/sub has no history, §9)."""
        from fastpush.thoonk.listener import FinishListener

        return FinishListener(self)

    # Consumer ----------------------------------------------------------------

    async def claim(self, n: int = 1) -> list[Job]:
        """Take up to ``n`` queued jobs without blocking, atomically (§14.1)."""
        k = self.keys
        notice = k.claimed if self.claim_notice else ""
        reply = await self._claim(
            keys=(k.ids, k.items, k.claimed, k.cancelled), args=(n, notice)
        )
        now = reply[0]
        return [
            Job(reply[i], reply[i + 1], int(reply[i + 2]), now)
            for i in range(1, len(reply), 3)
        ]

    async def wait(self, timeout: float) -> bool:
        """Block until the queue is non-empty (True) or ``timeout`` passes.

        ``BLMOVE q q RIGHT RIGHT`` moves the tail onto itself: nothing changes,
        but it returns as soon as there is work (§15.1).  Servers before 6.2
        get a short sleep instead (BRPOPLPUSH on one list would reorder it).
        """
        k = self.keys
        if self._blmove:
            try:
                # The timeout is a double to Redis (6.0+); redis-py annotates int.
                got = await self.redis.blmove(
                    k.ids,
                    k.ids,
                    max(timeout, 0.01),  # type: ignore[arg-type]
                    "RIGHT",
                    "RIGHT",
                )
                return got is not None
            except ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                self._blmove = False
        await asyncio.sleep(min(timeout, 0.05))
        return bool(await self.redis.llen(k.ids))

    async def get(self, timeout: float = 0) -> Job:
        """One job, waiting up to ``timeout`` seconds (0 = forever); raises
        ``Empty`` like thoonk.py's ``get``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        while True:
            jobs = await self.claim(1)
            if jobs:
                return jobs[0]
            left = 1.0 if deadline is None else deadline - loop.time()
            if left <= 0:
                raise Empty(self.name)
            await self.wait(min(left, 1.0))

    async def finish(self, job: JobRef, result: Data | None = None) -> int:
        """Finish one job; ``result`` None publishes no notice (thoonk.py's
        NO_RESULT).  Returns OK, NOT_CLAIMED or CLAIMED_BY_OTHER."""
        return (await self.finish_many(((job, result),)))[0]

    async def finish_many(
        self, items: Iterable[tuple[JobRef, Data | None]]
    ) -> list[int]:
        """Finish many jobs in one round trip; one status per job."""
        parts: list[bytes] = []
        add = parts.append
        for job, result in items:
            raw_id, score = _ref(job)
            add(raw_id)
            add(b"\0")
            add(score)
            if result is None:
                add(b"\x000\x00")
            else:
                data = _b(result)
                if b"\0" in data:
                    raise ValueError("a job result cannot contain NUL (§9)")
                add(b"\x001")
                add(data)
                add(b"\0")
        if not parts:
            return []
        k = self.keys
        return await self._finish(
            keys=(k.claimed, k.cancelled, k.published, k.finishes, k.items, k.errors),
            args=(k.finish, b"".join(parts)),
        )

    async def cancel(self, job: JobRef, error: str = "", stat: str = "") -> int:
        """Give a claimed job back (back of the line, attempt count + 1)."""
        return (await self.cancel_many(((job, error),), stat))[0]

    async def cancel_many(
        self, items: Iterable[tuple[JobRef, str]], stat: str = ""
    ) -> list[int]:
        """Cancel several jobs; ``error`` is kept in ``fastpush.errors:<q>`` and
        ``stat`` counted in ``fastpush.stats:<q>`` (our keys, not Thoonk's)."""
        k = self.keys
        args = self._with_errors(items, stat)
        if len(args) == 1:
            return []
        return await self._cancel(
            keys=(k.claimed, k.cancelled, k.ids, k.errors, k.stats), args=args
        )

    async def stall(self, job: JobRef, error: str = "", stat: str = "") -> int:
        """Park a claimed job until someone retries it (the dead-letter set)."""
        return (await self.stall_many(((job, error),), stat))[0]

    async def stall_many(
        self, items: Iterable[tuple[JobRef, str]], stat: str = ""
    ) -> list[int]:
        k = self.keys
        args = self._with_errors(items, stat)
        if len(args) == 1:
            return []
        return await self._stall(
            keys=(k.claimed, k.cancelled, k.stalled, k.published, k.errors, k.stats),
            args=args,
        )

    @staticmethod
    def _with_errors(
        items: Iterable[tuple[JobRef, str]], stat: str
    ) -> list[bytes | str]:
        args: list[bytes | str] = [stat]
        for job, error in items:
            raw_id, score = _ref(job)
            args += (raw_id, score, error)
        return args

    async def retry(self, job_id: Data) -> bool:
        """Put a stalled job back on the queue; False if it was not stalled."""
        return bool((await self.retry_many((job_id,)))[0])

    async def retry_many(self, job_ids: Iterable[Data]) -> list[int]:
        k = self.keys
        args = [_b(i) for i in job_ids]
        if not args:
            return []
        return await self._retry(keys=(k.stalled, k.ids, k.published), args=args)

    async def retract(self, job_id: Data) -> bool:
        """Delete a job in any state (§8.7); False if it did not exist."""
        from redis.exceptions import WatchError

        k, raw = self.keys, _b(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(k.items)
                    if not await pipe.hexists(k.items, raw):
                        await pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hdel(k.items, raw)
                    pipe.hdel(k.cancelled, raw)
                    pipe.zrem(k.published, raw)
                    pipe.srem(k.stalled, raw)
                    pipe.zrem(k.claimed, raw)
                    # redis-py annotates the value str; bytes go out as they are.
                    pipe.lrem(k.ids, 1, raw)  # type: ignore[arg-type]
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def reap(self, lease: float, limit: int = 1000) -> list[str]:
        """Give back every claim older than ``lease`` seconds, as cancels."""
        k = self.keys
        ids = await self._reap(
            keys=(k.claimed, k.cancelled, k.ids, k.stats),
            args=(int(lease * 1000), limit),
        )
        return [i.decode("utf-8", "surrogateescape") for i in ids]

    async def touch(self, jobs: Sequence[Job]) -> list[int]:
        """Extend the lease of jobs we still own; updates their ``score``."""
        if not jobs:
            return []
        args: list[bytes] = []
        for job in jobs:
            args += (job.raw_id, job.score)
        reply = await self._touch(keys=(self.keys.claimed,), args=args)
        now = reply[0]
        for job, status in zip(jobs, reply[1:]):
            if status == OK:
                job.score = now
        return list(reply[1:])

    # Listings (§8.8) ---------------------------------------------------------

    async def get_ids(self) -> list[str]:
        """Every live job (queued, claimed or stalled), like thoonk.py."""
        return [
            i.decode("utf-8", "surrogateescape")
            for i in cast("list[bytes]", await self.redis.hkeys(self.keys.items))
        ]

    async def queued(self) -> list[str]:
        return [
            i.decode("utf-8", "surrogateescape")
            for i in cast("list[bytes]", await self.redis.lrange(self.keys.ids, 0, -1))
        ]

    async def claimed(self) -> dict[str, int]:
        pairs = cast(
            "list[tuple[bytes, float]]",
            await self.redis.zrange(self.keys.claimed, 0, -1, withscores=True),
        )
        return {i.decode("utf-8", "surrogateescape"): int(s) for i, s in pairs}

    async def stalled(self) -> set[str]:
        return {
            i.decode("utf-8", "surrogateescape")
            for i in cast("set[bytes]", await self.redis.smembers(self.keys.stalled))
        }

    async def failure_count(self, job_id: Data) -> int:
        return int(await self.redis.hget(self.keys.cancelled, _b(job_id)) or 0)

    async def item(self, job_id: Data) -> bytes | None:
        return cast("bytes | None", await self.redis.hget(self.keys.items, _b(job_id)))

    async def errors(self) -> dict[str, str]:
        """Last recorded error per job id (our ``fastpush.errors:<q>``)."""
        raw = cast("dict[bytes, bytes]", await self.redis.hgetall(self.keys.errors))
        return {
            k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "replace")
            for k, v in raw.items()
        }

    async def stats(self) -> dict[str, int]:
        """Failure counters kept in ``fastpush.stats:<q>``."""
        raw = cast("dict[bytes, bytes]", await self.redis.hgetall(self.keys.stats))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def counts(self) -> dict[str, int]:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(k.ids)
            pipe.zcard(k.claimed)
            pipe.scard(k.stalled)
            pipe.hlen(k.items)
            pipe.get(k.publishes)
            pipe.get(k.finishes)
            queued, claimed, stalled, live, puts, finishes = await pipe.execute()
        return {
            "queued": queued,
            "claimed": claimed,
            "stalled": stalled,
            "live": live,
            "publishes": int(puts or 0),
            "finishes": int(finishes or 0),
        }
