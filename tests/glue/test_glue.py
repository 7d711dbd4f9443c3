"""The glue end to end over a real Redis, with a real HTTP /pub server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from helpers import eventually, post, queue_at, running_glue
from pushstream_stub import Behaviour, StubServer
from thoonk_py_wire import OldThoonk

from fastpush.pipeline import JSONParserMixin, Message, RecordingPublisher


def test_each_job_is_published_to_its_channels_then_finished(
    redis_url: str, run: Any
) -> None:
    old = OldThoonk(redis_url)

    async def go() -> None:
        async with (
            StubServer() as srv,
            queue_at(redis_url) as q,
            q.results() as results,
        ):
            ours = await q.put_many([post(n) for n in range(40)])
            theirs = [
                await asyncio.get_running_loop().run_in_executor(
                    None, old.job("posts").put, post(n)
                )
                for n in range(40, 50)
            ]
            async with running_glue(
                redis_url, publish_url=srv.url, batch=8, concurrency=32
            ):
                got = await results.wait_all(ours + theirs, timeout=10)
            assert set(got.values()) == {b'{"ok":true,"published":4}'}
            # Finished only after all four publishes: every channel was served.
            assert len(srv.published) == 200
            by_post = {}
            for p in srv.published:
                body = json.loads(p.body)
                by_post.setdefault(body["post"]["id"], set()).add(p.channel)
            assert by_post["7"] == {"forum:f1", "thread:102", "user:1000", "post:7"}
            assert len(by_post) == 50
            counts = await q.counts()
            assert counts == {
                "queued": 0,
                "claimed": 0,
                "stalled": 0,
                "live": 0,
                "publishes": 50,
                "finishes": 50,
            }

    try:
        run(go())
    finally:
        old.close()


def test_bad_input_is_cancelled_recorded_counted_and_parked(
    redis_url: str, run: Any
) -> None:
    async def go() -> None:
        async with StubServer() as srv, queue_at(redis_url) as q:
            bad = await q.put(b"{not json")
            missing = await q.put(b'{"id": 1}')
            async with q.results() as results:
                good = await q.put(post(1))
                async with running_glue(
                    redis_url, publish_url=srv.url, max_attempts=3, batch=4
                ) as glue:
                    await results.wait(good, timeout=5)

                    async def parked() -> bool:
                        return await q.stalled() == {bad, missing}

                    await eventually(parked)
            errors = await q.errors()
            assert errors[bad].startswith("bad input: job body is not JSON")
            assert errors[missing] == "bad input: post has no 'forum'"
            assert glue.stats.bad_input == 6 and glue.stats.gave_up == 2
            assert await q.stats() == {"bad_input": 6, "gave_up": 2}
            assert await q.queued() == []
            # Parked jobs can be put back by an operator.
            assert await q.retry(bad) is True
            assert await q.queued() == [bad]

    run(go())


def test_a_pipeline_that_raises_cancels_the_job_with_the_error(
    redis_url: str, run: Any
) -> None:
    class Picky(JSONParserMixin):
        def transform(self, data: Any) -> Any:
            if data.get("boom"):
                raise RuntimeError("kaboom")
            return data

    rec = RecordingPublisher()

    async def go() -> None:
        async with queue_at(redis_url) as q, q.results() as results:
            boom = await q.put(b'{"boom": true, "channels": ["a"]}')
            fine = await q.put(b'{"channels": ["a"]}')
            async with running_glue(
                redis_url, pipeline=Picky(publisher=rec), max_attempts=2
            ) as glue:
                await results.wait(fine, timeout=5)

                async def parked() -> bool:
                    return await q.stalled() == {boom}

                await eventually(parked)
            assert (await q.errors())[boom] == "pipeline error: RuntimeError: kaboom"
            assert glue.stats.pipeline_error == 2
            assert [m.channels for m in rec.messages] == [("a",)]

    run(go())


def test_failed_publishes_are_retried_with_backoff_only_for_failed_channels(
    redis_url: str, run: Any
) -> None:
    def status(channel: str, n: int) -> int:
        return 503 if channel == "thread:101" and n < 2 else 200

    async def go() -> None:
        async with StubServer(Behaviour(status)) as srv, queue_at(redis_url) as q:
            async with q.results() as results:
                job = await q.put(post(1))
                async with running_glue(
                    redis_url, publish_url=srv.url, retries=3, backoff=0.01
                ) as glue:
                    assert (
                        await results.wait(job, timeout=5)
                        == b'{"ok":true,"published":4}'
                    )
            assert sorted(srv.channels()) == [
                "forum:f1",
                "post:1",
                "thread:101",
                "user:1001",
            ]
            assert srv.counts["thread:101"] == 3 and srv.counts["forum:f1"] == 1
            assert glue.stats.publish_retries == 2 and glue.stats.finished == 1

    run(go())


def test_publishes_that_keep_failing_stall_or_cancel_the_job_as_configured(
    redis_url: str, run: Any
) -> None:
    def status(channel: str, n: int) -> int:
        return 503 if channel == "forum:f2" else 200

    async def go() -> None:
        async with StubServer(Behaviour(status)) as srv, queue_at(redis_url) as q:
            job = await q.put(post(2))
            async with running_glue(
                redis_url,
                publish_url=srv.url,
                retries=1,
                backoff=0.01,
                on_failure="stall",
            ):

                async def stalled() -> bool:
                    return await q.stalled() == {job}

                await eventually(stalled)
            assert (await q.errors())[job].startswith("publish failed: HTTP 503")
            assert srv.counts["forum:f2"] == 2  # the try and one retry
            await q.retry(job)
            async with running_glue(
                redis_url,
                publish_url=srv.url,
                retries=0,
                on_failure="cancel",
                max_attempts=3,
            ) as glue:

                async def given_up() -> bool:
                    return glue.stats.gave_up == 1

                await eventually(given_up)
            # Cancelled (re-queued) twice, then parked by the attempt limit.
            assert glue.stats.publish_failed == 3
            assert await q.stalled() == {job}
            assert (await q.stats())["publish_failed"] == 4

    run(go())


def test_a_non_retryable_publish_error_is_not_retried(redis_url: str, run: Any) -> None:
    def status(channel: str, n: int) -> int:
        return 403 if channel.startswith("user:") else 200

    async def go() -> None:
        async with StubServer(Behaviour(status)) as srv, queue_at(redis_url) as q:
            job = await q.put(post(3))
            async with running_glue(
                redis_url, publish_url=srv.url, retries=5, on_failure="stall"
            ) as glue:

                async def stalled() -> bool:
                    return await q.stalled() == {job}

                await eventually(stalled)
            assert srv.counts["user:1003"] == 1
            assert glue.stats.publish_retries == 0

    run(go())


def test_stop_finishes_the_jobs_in_flight(redis_url: str, run: Any) -> None:
    gate = asyncio.Event()

    class Slow:
        async def start(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

        async def publish(self, messages: list[Message]) -> list[None]:
            await gate.wait()
            return [None] * len(messages)

    class P(JSONParserMixin):
        pass

    async def go() -> None:
        async with queue_at(redis_url) as q:
            jobs = await q.put_many([b'{"channels": ["a"]}'] * 5)
            async with running_glue(redis_url, pipeline=P(publisher=Slow())) as glue:

                async def claimed() -> bool:
                    return len(await q.claimed()) == 5

                await eventually(claimed)
                glue.stop()
                await asyncio.sleep(0.05)
                gate.set()
            assert glue.stats.finished == 5
            assert await q.get_ids() == []
            assert len(jobs) == 5

    run(go())


def test_serve_glue_publishes_in_process(redis_url: str, run: Any) -> None:
    from fastpush.glue import serve_glue

    got: list[tuple[str, bytes, str | None, str | None]] = []

    async def publish(
        channel: str,
        body: bytes,
        event_id: str | None = None,
        event_type: str | None = None,
    ) -> None:
        got.append((channel, body, event_id, event_type))

    async def go() -> None:
        async with queue_at(redis_url, "inproc") as q, q.results() as results:
            task = asyncio.ensure_future(
                serve_glue(
                    {"queue": "inproc", "redis": redis_url, "stats_interval": 0},
                    publish,
                )
            )
            try:
                job = await q.put(post(5))
                assert (
                    await results.wait(job, timeout=5) == b'{"ok":true,"published":4}'
                )
            finally:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        assert [c for c, *_ in got] == ["forum:f2", "thread:100", "user:1005", "post:5"]
        assert json.loads(got[0][1])["post"]["message"] == "message 5"

    run(go())
