"""fastpush.thoonk against the thoonk.py command sequences (wire compatibility)."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from keyspace import dump
from thoonk_py_wire import OldThoonk

from fastpush.thoonk import CLAIMED_BY_OTHER, NOT_CLAIMED, OK, Thoonk, WrongFeedType


class Notices:
    """Records pub/sub messages on some channels, from a thread."""

    def __init__(self, url: str, *channels: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*channels)
        self.messages: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            msg = self.pubsub.get_message(timeout=0.05)
            if msg and msg["type"] == "message":
                self.messages.append((msg["channel"].decode(), msg["data"]))

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()
        self.client.close()


def test_jobs_put_by_thoonk_py_are_claimed_and_finished_by_ours(
    redis_url: str, run_any: Any
) -> None:
    old = OldThoonk(redis_url)
    results = Notices(redis_url, "job.finish:posts")
    try:
        q = old.job("posts")
        first = q.put(b"one")
        second = q.put(b"two")
        urgent = q.put(b"urgent", priority=True)

        async def consume() -> list[tuple[str, bytes, int]]:
            async with Thoonk.from_url(redis_url) as thoonk:
                queue = await thoonk.job("posts")
                jobs = await queue.claim(10)
                assert [j.attempts for j in jobs] == [0, 0, 0]
                statuses = await queue.finish_many(
                    [(j, b"done:" + j.body) for j in jobs]
                )
                assert statuses == [OK, OK, OK]
                return [(j.id, j.body, j.attempts) for j in jobs]

        got = run_any(consume())
        # Priority first, then FIFO: the right end of the list.
        assert got == [(urgent, b"urgent", 0), (first, b"one", 0), (second, b"two", 0)]
        notices = results.wait_for(3)
        assert sorted(notices) == sorted(
            ("job.finish:posts", f"{i}\0done:".encode() + b)
            for i, b in [(first, b"one"), (second, b"two"), (urgent, b"urgent")]
        )
        r = old.redis
        assert r.hlen("feed.items:posts") == 0
        assert r.zcard("feed.published:posts") == 0
        assert r.zcard("feed.claimed:posts") == 0
        assert r.get("feed.finishes:posts") == b"3"
        assert r.get("feed.publishes:posts") == b"3"
    finally:
        results.close()
        old.close()


def test_jobs_put_by_us_are_read_by_thoonk_py(redis_url: str, run_any: Any) -> None:
    old = OldThoonk(redis_url)
    notices = Notices(redis_url, "feed.publishes:posts")
    try:

        async def produce() -> tuple[list[str], str]:
            async with Thoonk.from_url(redis_url) as thoonk:
                queue = await thoonk.job("posts")
                ids = await queue.put_many([b"a", b"b"])
                urgent = await queue.put(b"u", priority=True)
                return ids, urgent

        ids, urgent = run_any(produce())
        q = old.job("posts")  # already exists: create is a no-op
        assert q.get(1) == (urgent, b"u", 0)
        assert q.get(1) == (ids[0], b"a", 0)
        assert q.get(1) == (ids[1], b"b", 0)
        for job_id in (urgent, *ids):
            q.finish(job_id)
        assert q.get_ids() == []
        assert old.redis.get("feed.finishes:posts") == b"3"
        # The put notice thoonk.py listeners dispatch as "publish" events.
        got = notices.wait_for(3)
        assert [m for _, m in got] == [
            f"{ids[0]}\0a".encode(),
            f"{ids[1]}\0b".encode(),
            f"{urgent}\0u".encode(),
        ]
    finally:
        notices.close()
        old.close()


def _scenario_old(url: str) -> list[str]:
    old = OldThoonk(url)
    try:
        q = old.job("q")
        ids = [q.put(b"x0"), q.put(b"x1"), q.put(b"x2"), q.put(b"x3", priority=True)]
        a = q.get(1)[0]  # x3
        b = q.get(1)[0]  # x0
        c = q.get(1)[0]  # x1
        q.finish(a, b"result")
        q.cancel(b)
        q.stall(c)
        q.get(1)  # x2 stays claimed
        return ids
    finally:
        old.close()


async def _scenario_new(url: str) -> list[str]:
    async with Thoonk.from_url(url) as thoonk:
        q = await thoonk.job("q")
        ids = await q.put_many([b"x0", b"x1", b"x2"])
        ids.append(await q.put(b"x3", priority=True))
        a, b, c = await q.claim(3)
        assert await q.finish(a, b"result") == OK
        assert await q.cancel(b) == OK
        assert await q.stall(c) == OK
        assert len(await q.claim(1)) == 1
        return ids


def test_same_keyspace_as_thoonk_py_for_put_claim_finish_cancel_stall(
    redis_url: str, run: Any
) -> None:
    old_ids = _scenario_old(redis_url)
    before = dump(redis_url, old_ids)
    redis.Redis.from_url(redis_url).flushall()
    new_ids = run(_scenario_new(redis_url))
    after = dump(redis_url, new_ids)
    assert after == before
    # Sanity: the comparison saw the interesting keys.
    assert after["feed.cancelled:q"] == ("hash", {b"<J0>": b"1"})
    assert after["feed.stalled:q"] == ("set", [b"<J1>"])
    assert after["feed.claimed:q"] == ("zset", [(b"<J2>", "<ms>")])


def test_cancel_counts_are_shared_both_ways(redis_url: str, run: Any) -> None:
    old = OldThoonk(redis_url)
    try:
        q = old.job("q")
        job_id = q.put(b"body")
        claimed_id, _, count = q.get(1)
        q.cancel(claimed_id)

        async def ours() -> None:
            async with Thoonk.from_url(redis_url) as thoonk:
                queue = await thoonk.job("q")
                (job,) = await queue.claim(5)
                assert (job.id, job.attempts) == (job_id, 1)
                assert await queue.cancel(job, error="boom") == OK

        run(ours())
        assert q.get(1) == (job_id, b"body", 2)
        q.finish(job_id)
        assert old.redis.hlen("feed.cancelled:q") == 0
    finally:
        old.close()


def test_retry_puts_only_stalled_jobs_back_with_a_ms_score(
    redis_url: str, run: Any
) -> None:
    async def go() -> None:
        async with Thoonk.from_url(redis_url) as thoonk:
            q = await thoonk.job("q")
            job_id = await q.put(b"x")
            (job,) = await q.claim(1)
            assert await q.stall(job, error="parked") == OK
            assert await q.stalled() == {job_id}
            assert await q.retry(job_id) is True
            assert await q.retry(job_id) is False  # thoonk.py would re-queue again
            assert await q.queued() == [job_id]
            score = await q.redis.zscore(q.keys.published, job_id)
            assert score > 1e11

    run(go())
    old = OldThoonk(redis_url)
    try:
        job_id, body, count = old.job("q").get(1)
        assert (body, count) == (b"x", 0)
    finally:
        old.close()


def test_reaper_gives_back_a_job_whose_old_worker_died(
    redis_url: str, run: Any
) -> None:
    old = OldThoonk(redis_url)
    try:
        q = old.job("q")
        job_id = q.put(b"x")
        q.get(1)  # claimed by an old worker that then dies
    finally:
        old.close()

    async def go() -> None:
        async with Thoonk.from_url(redis_url) as thoonk:
            queue = await thoonk.job("q")
            assert await queue.reap(lease=60) == []  # still within its lease
            assert await queue.claim(1) == []
            time.sleep(0.01)
            assert await queue.reap(lease=0.001) == [job_id]
            (job,) = await queue.claim(1)
            assert (job.id, job.attempts) == (job_id, 1)
            assert (await queue.stats())["reaped"] == 1

    run(go())


def test_finish_refuses_a_claim_that_is_not_ours(redis_url: str, run: Any) -> None:
    async def go() -> None:
        async with Thoonk.from_url(redis_url) as thoonk:
            q = await thoonk.job("q")
            await q.put(b"x")
            (job,) = await q.claim(1)
            time.sleep(0.005)
            await q.reap(lease=0.001)  # lease lost ...
            (again,) = await q.claim(1)  # ... and someone else holds it now
            assert again.score != job.score
            assert await q.finish(job, b"late") == CLAIMED_BY_OTHER
            assert await q.touch([job]) == [CLAIMED_BY_OTHER]
            assert await q.touch([again]) == [OK]
            assert await q.finish(again, b"ok") == OK
            assert await q.finish(again, b"twice") == NOT_CLAIMED
            assert await q.finish(again.id) == NOT_CLAIMED

    run(go())


def test_claim_sends_the_thoonk_py_claim_notice(redis_url: str, run: Any) -> None:
    notices = Notices(redis_url, "feed.claimed:q")
    try:

        async def go() -> str:
            async with Thoonk.from_url(redis_url) as thoonk:
                q = await thoonk.job("q")
                job_id = await q.put(b"x")
                await q.claim(1)
                return job_id

        job_id = run(go())
        assert notices.wait_for(1) == [("feed.claimed:q", job_id.encode())]
    finally:
        notices.close()


def test_claim_drops_ids_whose_body_was_retracted(redis_url: str, run: Any) -> None:
    async def go() -> None:
        async with Thoonk.from_url(redis_url) as thoonk:
            q = await thoonk.job("q")
            gone = await q.put(b"gone")
            kept = await q.put(b"kept")
            await q.redis.hdel(q.keys.items, gone)  # a thoonk.js 0.5-style leftover
            jobs = await q.claim(5)
            assert [j.id for j in jobs] == [kept]
            assert await q.claimed() == {kept: int(jobs[0].score)}

    run(go())


def test_queue_registry_matches_thoonk_py(redis_url: str, run: Any) -> None:
    notices = Notices(redis_url, "newfeed", "conffeed")
    try:

        async def go() -> str:
            async with Thoonk.from_url(redis_url) as thoonk:
                await thoonk.job("jobs")
                await thoonk.job("jobs")  # opening again creates nothing
                await thoonk.feed("plain")
                try:
                    await thoonk.job("plain")
                except WrongFeedType:
                    pass
                else:
                    raise AssertionError("opened a feed as a job queue")
                assert await thoonk.get_config("jobs") == {"type": "job"}
                assert await thoonk.feed_names() == {"jobs", "plain"}
                return thoonk.instance

        instance = run(go())
        got = notices.wait_for(4)
        assert got == [
            ("newfeed", f"jobs\0{instance}".encode()),
            ("conffeed", f"jobs\0{instance}".encode()),
            ("newfeed", f"plain\0{instance}".encode()),
            ("conffeed", f"plain\0{instance}".encode()),
        ]
    finally:
        notices.close()


def test_feed_publish_matches_thoonk_py_including_trim(
    redis_url: str, run: Any
) -> None:
    old = OldThoonk(redis_url)
    try:
        f = old.feed("f", {"max_length": "3"})
        ids = [f.publish(b"i%d" % n, f"id{n}") for n in range(5)]
        f.publish(b"edited", "id4")
        before = dump(redis_url, ids)
    finally:
        old.close()
    redis.Redis.from_url(redis_url).flushall()

    async def go() -> list[str]:
        async with Thoonk.from_url(redis_url) as thoonk:
            feed = await thoonk.feed("f", {"max_length": 3})
            out = [await feed.publish(b"i%d" % n, f"id{n}") for n in range(5)]
            await feed.publish(b"edited", "id4")
            assert await feed.get_item("id4") == b"edited"
            return out

    after = dump(redis_url, run(go()))
    assert after == before
