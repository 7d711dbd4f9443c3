"""The glue: a Thoonk job consumer that runs each job through a pipeline and
finishes it only once every publish succeeded (end-to-end acks).

    fastpush glue --queue posts --redis redis://127.0.0.1:6379/0 \\
                  --pipeline myapp.realtime:PostPipeline --concurrency 256

One process runs ``concurrency // batch`` workers.  A worker claims up to
``batch`` jobs in one Redis round trip, runs the pipeline over them, hands all
their messages to the publisher at once, retries the channels that failed with
exponential backoff, and then finishes (or cancels / stalls) the whole batch in
one more round trip.  A lease reaper gives back the claims of dead consumers,
and a heartbeat extends the lease of jobs still being worked on, so a consumer
killed mid-job loses nothing and a slow one keeps its jobs.

Failures, and what happens to the job (the Thoonk cancel count is the attempt
counter; ``fastpush.errors:<q>`` keeps the last error of each job and
``fastpush.stats:<q>`` the counts):

* the body does not parse, or the pipeline raises: cancelled with the error
  recorded, so it goes to the back of the queue and never blocks it;
* a publish still fails after ``retries`` retries: cancelled or stalled, as
  ``on_failure`` says;
* a job claimed ``max_attempts`` times already: stalled (the dead-letter set;
  ``JobQueue.retry`` puts it back), so nothing is retried forever.

``serve_glue`` runs the same loop inside ``fastpush serve``, publishing
in-process.  See docs/glue.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fastpush.pipeline.base import (
    BadInput,
    InProcessPublish,
    Message,
    Pipeline,
    PipelineError,
    PublishError,
)
from fastpush.thoonk import Job, JobQueue, Thoonk, connect
from fastpush.thoonk.job import OK

log = logging.getLogger("fastpush.glue")
T = TypeVar("T")

DEFAULT_PUBLISH_URL = "http://127.0.0.1:9080/pub"
ON_FAILURE = ("cancel", "stall")


class GlueConfigError(ValueError):
    pass


def _positive(name: str, value: Any, kind: type) -> Any:
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise GlueConfigError(f"glue.{name}: expected a {kind.__name__}") from None
    if out <= 0:
        raise GlueConfigError(f"glue.{name}: must be > 0")
    return out


@dataclass
class GlueConfig:
    """Every glue setting, with its default; the ``[glue]`` table of the
    server's TOML file and the ``fastpush glue`` flags both map onto it."""

    #: Thoonk job queue to consume (created as a job queue if missing).
    queue: str = "fastpush"
    #: Redis URL (redis://host:port/db, rediss://, unix://).
    redis: str = "redis://127.0.0.1:6379/0"
    #: "module:Name" of a Pipeline class, instance or factory; None: default.
    pipeline: str | None = None
    #: Keyword arguments for the pipeline class or factory.
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    #: Jobs in flight at most (the sum over the workers).
    concurrency: int = 256
    #: Jobs claimed per Redis round trip at most (per worker).
    batch: int = 64
    #: push-stream compatible publisher location for HTTP publishing.  Inside
    #: ``fastpush serve`` and unset, the default pipeline publishes in-process.
    publish_url: str | None = None
    #: After the publish retries: "cancel" (re-queue) or "stall" (park).
    on_failure: str = "cancel"
    #: Publish retries per job, after the first try.
    retries: int = 3
    #: First retry delay in seconds; doubles per retry up to backoff_max.
    backoff: float = 0.05
    backoff_max: float = 2.0
    #: A job given back this many times is stalled instead of run again.
    max_attempts: int = 5
    #: Claim lease in seconds: older claims are given back by the reaper.
    lease: float = 30.0
    #: Send thoonk.py's feed.claimed:<q> notice on claim.
    claim_notice: bool = True
    #: HTTP publisher: keep-alive connections, pipelining depth, timeout (s).
    http_connections: int = 4
    http_pipelining: int = 1
    http_timeout: float = 5.0
    #: One POST per message for all its channels (/pub?id=a/b/c).
    http_group_channels: bool = False
    #: Seconds between statistics log lines (0: only at exit).
    stats_interval: float = 60.0

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> GlueConfig:
        """From a ``[glue]`` table; unknown keys are errors (typos)."""
        known = {f.name for f in fields(cls)}
        data = dict(table)
        http = data.pop("http", None)
        if isinstance(http, Mapping):  # [glue.http] connections/pipelining/timeout
            for key, value in http.items():
                data.setdefault(f"http_{key}", value)  # a flat key wins
        data.pop("enabled", None)  # the server's switch, not ours
        unknown = sorted(set(data) - known)
        if unknown:
            raise GlueConfigError(f"unknown [glue] keys: {', '.join(unknown)}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        if not self.queue or "\0" in self.queue:
            raise GlueConfigError("glue.queue: a non-empty name without NUL")
        for name in ("concurrency", "batch", "max_attempts", "http_connections"):
            setattr(self, name, _positive(name, getattr(self, name), int))
        self.http_pipelining = _positive("http_pipelining", self.http_pipelining, int)
        for name in ("lease", "http_timeout", "backoff", "backoff_max"):
            setattr(self, name, _positive(name, getattr(self, name), float))
        if int(self.retries) < 0:
            raise GlueConfigError("glue.retries: must be >= 0")
        self.retries = int(self.retries)
        if self.on_failure not in ON_FAILURE:
            raise GlueConfigError(f"glue.on_failure: one of {', '.join(ON_FAILURE)}")
        if not isinstance(self.pipeline_options, Mapping):
            raise GlueConfigError("glue.pipeline_options: expected a table")
        if self.batch > 1000:  # Lua unpack() of a claim's ids has a stack limit
            raise GlueConfigError("glue.batch: at most 1000")
        self.batch = min(self.batch, self.concurrency)

    @property
    def workers(self) -> int:
        return max(1, self.concurrency // self.batch)


def load_pipeline(
    config: GlueConfig, inprocess: InProcessPublish | None = None
) -> Pipeline:
    """Build the configured pipeline.

    ``config.pipeline`` names a Pipeline subclass (instantiated with
    ``publish_url``, ``inprocess``, ``http`` and ``pipeline_options``), a
    factory taking the same keywords, or a ready Pipeline instance.  A pipeline
    without a publisher mixin publishes in-process when ``inprocess`` is given
    and no ``publish_url`` is set, else over HTTP to ``publish_url``.
    """
    from fastpush.pipeline.examples import DefaultPipeline

    if config.pipeline:
        module_name, _, attr = config.pipeline.partition(":")
        if not attr:
            raise GlueConfigError(
                f"--pipeline: expected module:Name, got {config.pipeline!r}"
            )
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise GlueConfigError(f"--pipeline {config.pipeline}: {exc}") from exc
    else:
        target = DefaultPipeline
    if isinstance(target, Pipeline):
        return target
    kwargs: dict[str, Any] = dict(config.pipeline_options)
    kwargs["publish_url"] = config.publish_url or (
        None if inprocess else DEFAULT_PUBLISH_URL
    )
    kwargs["inprocess"] = inprocess if not config.publish_url else None
    kwargs["http"] = {
        "connections": config.http_connections,
        "pipelining": config.http_pipelining,
        "timeout": config.http_timeout,
        "group_channels": config.http_group_channels,
    }
    pipeline = target(**kwargs)
    if not isinstance(pipeline, Pipeline):
        raise GlueConfigError(f"--pipeline {config.pipeline} did not make a Pipeline")
    return pipeline


class Stats:
    """Counters of one glue process (also logged, and exposed to tests)."""

    # Declared for type checkers; __init__ zeroes every slot.
    claimed: int
    finished: int
    published: int
    publish_retries: int
    publish_failed: int
    bad_input: int
    pipeline_error: int
    gave_up: int
    lost: int
    reaped: int
    redis_errors: int

    __slots__ = (
        "claimed",
        "finished",
        "published",
        "publish_retries",
        "publish_failed",
        "bad_input",
        "pipeline_error",
        "gave_up",
        "lost",
        "reaped",
        "redis_errors",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class Glue:
    """The consumer.  ``await run()`` until ``stop()``; jobs already claimed
    when stopping are finished (or given back) before ``run`` returns."""

    def __init__(
        self,
        config: GlueConfig,
        pipeline: Pipeline,
        *,
        redis: Any = None,
    ) -> None:
        config.validate()
        self.config = config
        self.pipeline = pipeline
        self.stats = Stats()
        self._redis = redis
        self._owns_redis = redis is None
        self.queue: JobQueue | None = None
        self._stopping = asyncio.Event()
        self._waiting: asyncio.Task[bool] | None = None
        self._wait_lock = asyncio.Lock()
        self._wake = 0
        # raw id -> (job, loop time of its last claim or touch)
        self._inflight: dict[bytes, tuple[Job, float]] = {}
        self._redis_ok = True
        self._last_traceback = -1e9
        self.ready = asyncio.Event()  # set once the queue is open and workers run

    # Lifecycle ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; in-flight jobs are completed, then ``run`` returns."""
        self._stopping.set()
        if self._waiting is not None:
            self._waiting.cancel()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        cfg = self.config
        if self._redis is None:
            self._redis = connect(cfg.redis, max_connections=cfg.workers * 2 + 8)
        try:
            queue = await self._until_redis(self._open_queue)
            if queue is None:  # stopped before Redis came up
                return
            self.queue = queue
            await self.pipeline.start()
            log.info(
                "glue consuming %r on %s: %d workers x %d jobs, pipeline %s",
                cfg.queue,
                cfg.redis,
                cfg.workers,
                cfg.batch,
                type(self.pipeline).__name__,
            )
            helpers = [
                asyncio.ensure_future(self._reaper()),
                asyncio.ensure_future(self._heartbeat()),
            ]
            if cfg.stats_interval > 0:
                helpers.append(asyncio.ensure_future(self._stats_logger()))
            workers = [
                asyncio.ensure_future(self._worker()) for _ in range(cfg.workers)
            ]
            self.ready.set()
            try:
                await asyncio.gather(*workers)
            finally:
                for task in workers + helpers:
                    task.cancel()
                await asyncio.gather(*workers, *helpers, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                await self.pipeline.aclose()
            if self._owns_redis and self._redis is not None:
                await self._redis.aclose()
            log.info("glue stopped: %s", json.dumps(self.stats.as_dict()))

    async def _open_queue(self) -> JobQueue:
        thoonk = Thoonk(self._redis)
        queue = await thoonk.job(self.config.queue)
        queue.claim_notice = self.config.claim_notice
        return queue

    # Redis outages -------------------------------------------------------------

    async def _until_redis(self, fn: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``fn`` until Redis answers; None if stopped first.  The jobs
        this guards are already published, so giving up early would only
        make them run again after the lease."""
        delay = 0.05
        while True:
            try:
                out = await fn()
            except _REDIS_DOWN as exc:
                self.stats.redis_errors += 1
                if self._redis_ok:
                    self._redis_ok = False
                    log.warning("redis unavailable (%s); retrying", exc)
                if self.stopping and delay >= 1.0:
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if not self._redis_ok:
                self._redis_ok = True
                log.warning("redis is back")
            return out

    # Workers -----------------------------------------------------------------

    async def _worker(self) -> None:
        cfg, queue = self.config, self.queue
        assert queue is not None
        while not self.stopping:
            try:
                jobs = await queue.claim(cfg.batch)
            except _REDIS_DOWN as exc:
                await self._redis_down(exc)
                continue
            except RedisError as exc:
                log.error("claim failed: %s", exc)
                await self._sleep(1.0)
                continue
            if not self._redis_ok:
                self._redis_ok = True
                log.warning("redis is back")
            if not jobs:
                await self._wait_for_work()
                continue
            try:
                await self._handle(jobs)
            except Exception:  # never let one batch kill the consumer
                log.exception(
                    "batch of %d jobs failed; the reaper will retry them", len(jobs)
                )

    async def _redis_down(self, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        if self._redis_ok:
            self._redis_ok = False
            log.warning("redis unavailable (%s); retrying", exc)
        await self._sleep(0.2)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _wait_for_work(self) -> None:
        """Block until the queue has work.  One worker waits in Redis (BLMOVE)
        for all of them; the others wait on its lock and then go claim."""
        seen = self._wake
        async with self._wait_lock:
            if self._wake != seen or self.stopping:
                return
            assert self.queue is not None
            self._waiting = asyncio.ensure_future(self.queue.wait(1.0))
            try:
                await self._waiting
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
            except _REDIS_DOWN as exc:
                await self._redis_down(exc)
            finally:
                self._waiting = None
                self._wake += 1

    async def _handle(self, jobs: list[Job]) -> None:
        cfg, pipeline, stats = self.config, self.pipeline, self.stats
        stats.claimed += len(jobs)
        now = asyncio.get_running_loop().time()
        inflight = self._inflight
        for job in jobs:
            inflight[job.raw_id] = (job, now)
        good: list[Job] = []
        messages: list[list[Message]] = []
        bad: list[tuple[Job, str]] = []
        errors: list[tuple[Job, str]] = []
        gave_up: list[Job] = []
        process = pipeline.process
        for job in jobs:
            if job.attempts >= cfg.max_attempts:
                gave_up.append(job)
                continue
            try:
                msgs = process(job.body)
            except BadInput as exc:
                bad.append((job, f"bad input: {exc}"))
            except Exception as exc:
                errors.append((job, f"pipeline error: {type(exc).__name__}: {exc}"))
                now = time.monotonic()
                if now - self._last_traceback >= 10.0:  # one a while, not a flood
                    self._last_traceback = now
                    log.warning(
                        "job %s: pipeline raised\n%s", job.id, traceback.format_exc()
                    )
            else:
                good.append(job)
                messages.append(msgs)
        failed = await self._publish(good, messages) if good else {}
        finish: list[tuple[Job, bytes | None]] = []
        result = pipeline.result
        for i, job in enumerate(good):
            if i not in failed:
                finish.append((job, result(messages[i])))
        try:
            await self._settle(
                finish, bad, errors, gave_up, [(good[i], r) for i, r in failed.items()]
            )
        finally:
            for job in jobs:
                inflight.pop(job.raw_id, None)

    async def _publish(
        self, jobs: list[Job], messages: list[list[Message]]
    ) -> dict[int, str]:
        """Publish every job's messages; retry what failed with backoff.
        Returns {job index: reason} for the jobs that could not be published."""
        cfg, stats = self.config, self.stats
        pending = list(range(len(jobs)))
        todo = messages
        failed: dict[int, str] = {}
        attempt = 0
        while pending:
            flat: list[Message] = []
            owners: list[int] = []
            for i in pending:
                for msg in todo[i]:
                    flat.append(msg)
                    owners.append(i)
            try:
                outcomes = await self.pipeline.publish(flat)
                if len(outcomes) != len(flat):
                    raise PipelineError(
                        f"publisher gave {len(outcomes)} outcomes "
                        f"for {len(flat)} messages"
                    )
            except Exception as exc:  # a broken publisher fails the lot
                err = PublishError(f"{type(exc).__name__}: {exc}")
                outcomes = [err] * len(flat)
            retry: dict[int, list[Message]] = {}
            final: dict[int, str] = {}
            reason = ""
            for msg, owner, outcome in zip(flat, owners, outcomes):
                if outcome is None:
                    stats.published += len(msg.channels)
                    continue
                lost = outcome.channels or msg.channels
                stats.published += len(msg.channels) - len(lost)
                reason = outcome.reason
                if not outcome.retryable or attempt >= cfg.retries:
                    final[owner] = outcome.reason
                else:
                    retry.setdefault(owner, []).append(msg.only(lost))
            for owner in final:
                # Part of the job failed for good: the rest is not retried
                # either; the whole job runs again or is parked.
                retry.pop(owner, None)
            failed.update(final)
            if not retry:
                break
            attempt += 1
            stats.publish_retries += len(retry)
            delay = min(cfg.backoff * (2 ** (attempt - 1)), cfg.backoff_max)
            log.info(
                "publish failed for %d jobs (%s); retry %d/%d in %.2fs",
                len(retry),
                reason,
                attempt,
                cfg.retries,
                delay,
            )
            await asyncio.sleep(delay)
            pending = sorted(retry)
            todo = [retry.get(i, []) for i in range(len(jobs))]
        return failed

    async def _settle(
        self,
        finish: list[tuple[Job, bytes | None]],
        bad: list[tuple[Job, str]],
        errors: list[tuple[Job, str]],
        gave_up: list[Job],
        failed: list[tuple[Job, str]],
    ) -> None:
        """Record the outcome of a batch in Redis (finish, cancel, stall)."""
        queue, stats, cfg = self.queue, self.stats, self.config
        assert queue is not None
        if finish:
            statuses = await self._until_redis(lambda: queue.finish_many(finish))
            if statuses is not None:
                done = sum(1 for s in statuses if s == OK)
                stats.finished += done
                if done != len(finish):
                    lost = len(finish) - done
                    stats.lost += lost
                    log.warning(
                        "%d finished jobs were no longer ours (lease expired); "
                        "someone else runs them again",
                        lost,
                    )
        if bad:
            stats.bad_input += len(bad)
            _log_jobs(logging.WARNING, "cancelled", bad)
            await self._until_redis(lambda: queue.cancel_many(bad, "bad_input"))
        if errors:
            stats.pipeline_error += len(errors)
            _log_jobs(logging.WARNING, "cancelled", errors)
            await self._until_redis(lambda: queue.cancel_many(errors, "pipeline_error"))
        if gave_up:
            stats.gave_up += len(gave_up)
            why = f"given back {cfg.max_attempts} times or more (max_attempts)"
            _log_jobs(logging.ERROR, "stalled", [(job, why) for job in gave_up])
            # '' keeps the last error recorded for it.
            items = [(job, "") for job in gave_up]
            await self._until_redis(lambda: queue.stall_many(items, "gave_up"))
        if failed:
            stats.publish_failed += len(failed)
            items = [(job, f"publish failed: {reason}") for job, reason in failed]
            if cfg.on_failure == "cancel":
                _log_jobs(logging.ERROR, "cancelled", items)
                await self._until_redis(
                    lambda: queue.cancel_many(items, "publish_failed")
                )
            else:
                _log_jobs(logging.ERROR, "stalled", items)
                await self._until_redis(
                    lambda: queue.stall_many(items, "publish_failed")
                )

    # Background duties -------------------------------------------------------

    async def _reaper(self) -> None:
        """Give back claims older than the lease (consumers that died)."""
        queue, cfg = self.queue, self.config
        assert queue is not None
        interval = max(0.05, cfg.lease / 2)
        while not self.stopping:
            await self._sleep(interval)
            try:
                ids = await queue.reap(cfg.lease)
            except _REDIS_DOWN:
                continue
            except RedisError as exc:
                log.error("reaper: %s", exc)
                continue
            if ids:
                self.stats.reaped += len(ids)
                log.warning(
                    "reaper gave back %d jobs claimed more than %.1fs ago: %s",
                    len(ids),
                    cfg.lease,
                    ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else ""),
                )

    async def _heartbeat(self) -> None:
        """Extend the lease of jobs we hold for long (publish retries)."""
        queue, cfg = self.queue, self.config
        assert queue is not None
        period = cfg.lease / 3
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.02, period / 2))
            now = loop.time()
            old = [
                job for job, since in self._inflight.values() if now - since >= period
            ]
            if not old:
                continue
            try:
                await queue.touch(old)
            except (RedisError, *_REDIS_DOWN):
                continue
            for job in old:
                if job.raw_id in self._inflight:
                    self._inflight[job.raw_id] = (job, now)

    async def _stats_logger(self) -> None:
        last = self.stats.as_dict()
        t0 = time.monotonic()
        while True:
            await asyncio.sleep(self.config.stats_interval)
            now = self.stats.as_dict()
            t1 = time.monotonic()
            rate = (now["finished"] - last["finished"]) / max(t1 - t0, 1e-9)
            log.info("glue: %.0f jobs/s; %s", rate, json.dumps(now))
            last, t0 = now, t1


def _log_jobs(level: int, verb: str, items: Sequence[tuple[Job, str]]) -> None:
    """One log line per reason and batch, naming a few of the jobs: a broken
    downstream fails thousands of jobs a second, and a line each would bury
    everything else (the full list is in fastpush.errors:<q>)."""
    if not log.isEnabledFor(level):
        return
    by_reason: dict[str, list[str]] = {}
    for job, reason in items:
        by_reason.setdefault(reason, []).append(job.id)
    for reason, ids in by_reason.items():
        sample = ", ".join(ids[:3]) + (
            f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        )
        log.log(level, "%d job(s) %s: %s (%s)", len(ids), verb, reason, sample)


# In-process, inside `fastpush serve` -----------------------------------------


async def serve_glue(
    config: Mapping[str, Any],
    publish: InProcessPublish | None = None,
    *,
    drain_timeout: float = 10.0,
) -> None:
    """Run the glue from the server's ``[glue]`` table until cancelled.

    ``publish`` is the server's in-process ``async def publish(channel, body,
    event_id=None, event_type=None)``; with it, and no ``publish_url`` in the
    table, the pipeline publishes without leaving the process.  On
    cancellation the glue stops claiming and gives its in-flight jobs up to
    ``drain_timeout`` seconds to finish, then the cancellation goes on.
    """
    cfg = GlueConfig.from_mapping(config)
    pipeline = load_pipeline(cfg, publish)
    glue = Glue(cfg, pipeline)
    task = asyncio.ensure_future(glue.run())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        glue.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, drain_timeout)
        raise


# Command line ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``fastpush glue`` flags.  Unset flags keep the --config file's
    ``[glue]`` value, else the default."""
    d = GlueConfig()
    a = parser.add_argument
    a("--config", "-c", metavar="FILE", help="TOML file whose [glue] table to use")
    a("--queue", "-q", help=f"Thoonk job queue to consume (default {d.queue})")
    a("--redis", "-r", metavar="URL", help=f"Redis URL (default {d.redis})")
    a(
        "--pipeline",
        "-p",
        metavar="MODULE:NAME",
        help="Pipeline class, instance or factory (default: the built-in post one)",
    )
    a(
        "--pipeline-option",
        "-o",
        action="append",
        metavar="KEY=VALUE",
        help="keyword for the pipeline (VALUE parsed as JSON if it can be; repeatable)",
    )
    a("--concurrency", "-n", type=int, help=f"jobs in flight (default {d.concurrency})")
    a("--batch", type=int, help=f"jobs claimed per round trip (default {d.batch})")
    a(
        "--publish-url",
        metavar="URL",
        help=f"push-stream compatible /pub to POST to (default {DEFAULT_PUBLISH_URL})",
    )
    a(
        "--on-failure",
        choices=ON_FAILURE,
        help="what to do with a job whose publishes keep failing (default cancel)",
    )
    a("--retries", type=int, help=f"publish retries per job (default {d.retries})")
    a("--backoff", type=float, help=f"first retry delay, seconds (default {d.backoff})")
    a(
        "--max-attempts",
        type=int,
        help=f"stall a job given back this many times (default {d.max_attempts})",
    )
    a("--lease", type=float, help=f"claim lease, seconds (default {d.lease})")
    a(
        "--no-claim-notice",
        dest="claim_notice",
        action="store_false",
        default=None,
        help="do not send thoonk.py's feed.claimed notice",
    )
    a(
        "--http-connections",
        type=int,
        help=f"keep-alive connections (default {d.http_connections})",
    )
    a(
        "--http-pipelining",
        type=int,
        help="HTTP requests in flight per connection (default 1)",
    )
    a(
        "--http-group-channels",
        action="store_true",
        default=None,
        help="one POST per message for all its channels (/pub?id=a/b/c)",
    )
    a(
        "--http-timeout",
        type=float,
        help=f"publish timeout, seconds (default {d.http_timeout})",
    )
    a(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level (default info)",
    )
    a(
        "--stats-interval",
        type=float,
        help="seconds between stats lines (0: at exit only)",
    )


def config_from_args(args: argparse.Namespace) -> GlueConfig:
    table: dict[str, Any] = {}
    if getattr(args, "config", None):
        table = dict(_read_toml(args.config).get("glue", {}))
    for f in fields(GlueConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name != "pipeline_options":
            table[f.name] = value
    for item in getattr(args, "pipeline_option", None) or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise GlueConfigError(f"--pipeline-option {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        table.setdefault("pipeline_options", {})[key] = value
    return GlueConfig.from_mapping(table)


def _read_toml(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def run(args: argparse.Namespace) -> int:
    """``fastpush glue``: run until SIGTERM or SIGINT.  Exit codes: 0 clean
    stop, 2 bad configuration."""
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = config_from_args(args)
        pipeline = load_pipeline(cfg)
    except (GlueConfigError, PipelineError, OSError, ValueError) as exc:
        print(f"fastpush glue: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        glue = Glue(cfg, pipeline)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, glue.stop)
        await glue.run()

    try:
        import uvloop

        uvloop.run(main())
    except KeyboardInterrupt:  # pragma: no cover - the handler catches it
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastpush.glue`` (same flags as ``fastpush glue``)."""
    parser = argparse.ArgumentParser(
        prog="fastpush glue", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
