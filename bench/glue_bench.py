#!/usr/bin/env python
"""Jobs per second through the whole glue chain, per glue process.

    Redis queue (Thoonk) -> glue (pipeline: parse, clean, format once)
      -> publish to forum/thread/user/post channels -> subscriber

This process *is* the glue process: it runs ``fastpush.glue.Glue`` on uvloop.
Around it, separate processes: redis-server, the publish target and its
subscriber, and (for the latency phase) a paced producer.

Phase 1, throughput: ``--jobs`` jobs are put first, then the glue drains the
queue; the figure is jobs / (time from glue start until the subscriber has
received every job's message and every job is finished in Redis).
Phase 2, latency: a producer puts jobs at ``--latency-rate`` (default half the
phase-1 figure) for ``--latency-seconds``; the subscriber takes put-to-receive
latency from each message's ``createdAt`` (put time).  Same machine, same clock.

``--target``:
  fastpush  a real ``fastpush serve`` (needs the compiled core); the glue POSTs
            to its /pub over keep-alive HTTP, one streaming subscriber per forum
            channel receives (GET /sub/forum:N).
  inprocess the fastpush server runs *in this process* with the glue, which
            publishes through the server's own publish (no HTTP), as
            ``fastpush serve`` with a [glue] table does; the subscribers are
            another process.  The figure is then glue + server per process.
  stub      no fastpush: a recording push-stream /pub stub (another process)
            is the receiving end; it counts the forum-channel POSTs.
  null      no HTTP at all: the pipeline's messages go to a null publisher in
            this process (the glue's own ceiling: Redis + pipeline).

Every job is published to 4 channels (forum, thread, user, post); the
subscriber listens to the forum channels only, so it sees each job once.

Prints one JSON line: machine, flags, loop, and the results.  Profile with
    perf record -g -- python bench/glue_bench.py --target fastpush
or  python bench/glue_bench.py --target inprocess --profile glue.prof
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "glue"))

from redis_server import RedisServer, free_port  # noqa: E402

QUEUE = "bench"
CREATED = re.compile(rb'"createdAt":([0-9.]+)')


def body(n: int, forums: int, created: float) -> bytes:
    return (
        b'{"id":%d,"forum":"%d","thread":%d,"author":%d,'
        b'"message":"Post number %d, with a few words of text in it.",'
        b'"created_at":%.6f}' % (n, n % forums, n % 1000, n % 10000, n, created)
    )


# Receiving end (a separate process) -----------------------------------------


class Tally:
    """Counts forum-channel messages; latencies for those with createdAt > 0."""

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[float] = []

    def message(self, payload: bytes, now: float) -> None:
        self.count += 1
        if not self.first:
            self.first = now
        self.last = now
        m = CREATED.search(payload)
        if m is not None:
            created = float(m.group(1))
            if created > 0:
                self.latencies.append(now - created)


def _subscriber_main(port: int, forums: int, conn: Any) -> None:
    """Streaming subscribers to forum:0..N-1 on a fastpush server."""
    import httptools
    import uvloop

    tally = Tally()

    class Sub(asyncio.Protocol):
        def __init__(self, ready: asyncio.Future[None]) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.ready = ready
            self.parts: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_headers_complete(self) -> None:
            if not self.ready.done():
                self.ready.set_result(None)

        def on_body(self, data: bytes) -> None:
            self.parts.append(data)

        def on_chunk_complete(self) -> None:
            if self.parts:  # the terminating chunk has no body
                tally.message(b"".join(self.parts), time.time())
                self.parts.clear()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transports = []
        for f in range(forums):
            ready = loop.create_future()
            tr, _ = await loop.create_connection(
                lambda r=ready: Sub(r), "127.0.0.1", port
            )
            tr.write(f"GET /sub/forum:{f} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await ready
            transports.append(tr)
        await _serve_tally(conn, tally)
        for tr in transports:
            tr.close()

    uvloop.run(main())


def _stub_main(port: int, conn: Any) -> None:
    """A push-stream /pub stub that answers 200 and tallies forum channels."""
    import httptools
    import uvloop

    tally = Tally()
    info = (
        b'{"channel": "x", "published_messages": 1, '
        b'"stored_messages": 1, "subscribers": 0}\r\n'
    )
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(info) + info
    )

    class Pub(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""
            self.parts: list[bytes] = []
            self.out: list[bytes] = []

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)
            if self.out:  # one write for all the answers to this read
                self.transport.write(b"".join(self.out))
                self.out.clear()

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_body(self, data: bytes) -> None:
            self.parts.append(data)

        def on_message_complete(self) -> None:
            if b"id=forum" in self.url:
                tally.message(b"".join(self.parts), time.time())
            self.parts.clear()
            self.out.append(answer)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Pub, "127.0.0.1", port)
        conn.send("ready")
        await _serve_tally(conn, tally)
        server.close()

    uvloop.run(main())


async def _serve_tally(conn: Any, tally: Tally) -> None:
    """Answer the driver's questions over the pipe until told to stop."""
    loop = asyncio.get_running_loop()
    conn.send("ready")
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd == "stop":
            return
        if cmd == "reset":
            tally.__init__()  # type: ignore[misc]
            conn.send("ok")
        elif isinstance(cmd, tuple) and cmd[0] == "wait":
            deadline = time.time() + cmd[2]
            while tally.count < cmd[1] and time.time() < deadline:
                await asyncio.sleep(0.005)
            conn.send(
                {
                    "count": tally.count,
                    "first": tally.first,
                    "last": tally.last,
                    "latencies": tally.latencies,
                }
            )


# Paced producer (a separate process) ------------------------------------------


def _producer_main(
    url: str, rate: float, seconds: float, forums: int, start: int
) -> None:
    import uvloop

    from fastpush.thoonk import Thoonk

    async def main() -> None:
        async with Thoonk.from_url(url) as thoonk:
            q = await thoonk.job(QUEUE)
            tick = 0.002  # a small batch every 2 ms: the put rate, smoothly
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            n = start
            while True:
                elapsed = loop.time() - t0
                if elapsed >= seconds:
                    break
                # As many as are due by now: a late wake-up catches up instead
                # of lowering the rate.
                k = int(rate * elapsed) - (n - start)
                if k > 0:
                    now = time.time()
                    await q.put_many([body(n + i, forums, now) for i in range(k)])
                    n += k
                await asyncio.sleep(tick)

    uvloop.run(main())


# Driver ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def fill(url: str, jobs: int, forums: int) -> None:
    from fastpush.thoonk import Thoonk

    async with Thoonk.from_url(url) as thoonk:
        q = await thoonk.job(QUEUE)
        for start in range(0, jobs, 2000):
            await q.put_many(
                [body(n, forums, 0.0) for n in range(start, min(jobs, start + 2000))]
            )


def ask(conn: Any, msg: Any) -> Any:
    conn.send(msg)
    return conn.recv()


def start_fastpush(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    (workdir / "fastpush.toml").write_text(server_toml())
    args = [sys.executable, "-m", "fastpush", "serve", "--listen", f"127.0.0.1:{port}"]
    args += ["--config", str(workdir / "fastpush.toml")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(workdir / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    log.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"fastpush serve exited: {(workdir / 'server.log').read_text()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("fastpush serve did not start")


def server_toml() -> str:
    """fastpush's default configuration, with a message store big enough to
    keep every bench message (each job makes 4 channels, 3 of them new)."""
    from fastpush.config import DEFAULT_CONFIG_TOML

    return DEFAULT_CONFIG_TOML.replace(
        "[settings]\n", '[settings]\nshared_memory_size = "2g"\n', 1
    )


async def embedded_server(port: int) -> tuple[Any, Any, Any]:
    """fastpush's App serving on ``port`` in this loop, and an in-process
    publish for the glue.  The same pieces ``fastpush serve`` assembles."""
    from fastpush.config import parse_config
    from fastpush.http.protocol import HttpProtocol
    from fastpush.server import App

    loop = asyncio.get_running_loop()
    config = parse_config(server_toml(), listen=[f"127.0.0.1:{port}"])
    app = App(config, loop)
    app.start()
    server = await loop.create_server(lambda: HttpProtocol(app), "127.0.0.1", port)
    # Exactly the publish `fastpush serve` hands its [glue] table.
    publish = app.glue_publisher()

    return app, server, publish


class GCWatch:
    """Pauses of Python's cyclic collector in this process: with a message
    store of hundreds of thousands of objects, a full collection stops the
    loop for a while, and that shows in the latency tail."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t0))

    def summary(self) -> dict[str, Any]:
        full = [p for g, p in self.pauses if g == 2]
        return {
            "collections": len(self.pauses),
            "full": len(full),
            "max_pause_ms": round(
                max((p for _, p in self.pauses), default=0) * 1000, 1
            ),
            "total_ms": round(sum(p for _, p in self.pauses) * 1000, 1),
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import gc

    import uvloop

    from fastpush.glue import Glue, GlueConfig, load_pipeline
    from fastpush.pipeline import DefaultPipeline
    from fastpush.pipeline.publishers import RecordingPublisher

    tmp = Path(tempfile.mkdtemp(prefix="glue-bench-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    procs: list[Any] = []
    server: subprocess.Popen[bytes] | None = None
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    out: dict[str, Any] = {"target": args.target}
    try:
        port = free_port()
        glue_settings = {
            "queue": QUEUE,
            "redis": redis.url,
            "concurrency": args.concurrency,
            "batch": args.batch,
            "http_connections": args.http_connections,
            "http_pipelining": args.http_pipelining,
            "http_group_channels": args.http_group_channels,
            "claim_notice": not args.no_claim_notice,
            "stats_interval": 0,
        }
        if args.target == "fastpush":
            server = start_fastpush(tmp, port)
            sink = ctx.Process(target=_subscriber_main, args=(port, args.forums, there))
        elif args.target == "inprocess":
            sink = ctx.Process(target=_subscriber_main, args=(port, args.forums, there))
        elif args.target == "stub":
            sink = ctx.Process(target=_stub_main, args=(port, there))
        else:
            sink = None
        tally = Tally()
        embedded: list[Any] = []

        def start_sink() -> None:
            assert sink is not None
            sink.start()
            procs.append(sink)
            if args.target == "stub":
                here.recv()
            assert here.recv() == "ready"

        if sink is not None and args.target != "inprocess":
            start_sink()

        cfg = GlueConfig(publish_url=f"http://127.0.0.1:{port}/pub", **glue_settings)

        class NullTally(RecordingPublisher):
            async def publish(self, messages: Any) -> list[None]:
                now = time.time()
                for m in messages:
                    if m.channels[0].startswith("forum:"):
                        tally.message(m.body, now)
                return [None] * len(messages)

        async def phase(jobs: int) -> dict[str, Any]:
            task = None
            if args.target == "null":
                pipeline = DefaultPipeline(publisher=NullTally())
            elif args.target == "inprocess":
                pipeline = load_pipeline(GlueConfig(**glue_settings), embedded[2])
            else:
                pipeline = load_pipeline(cfg)
            glue = Glue(cfg, pipeline)
            await fill(redis.url, jobs, args.forums)
            cpu0 = time.process_time()
            t0 = time.time()
            task = asyncio.ensure_future(glue.run())
            if sink is None:
                while tally.count < jobs and time.time() - t0 < args.timeout:
                    await asyncio.sleep(0.005)
                got = {"count": tally.count, "first": tally.first, "last": tally.last}
            else:
                got = await asyncio.get_running_loop().run_in_executor(
                    None, ask, here, ("wait", jobs, args.timeout)
                )
            t1 = max(got["last"], t0)
            cpu = time.process_time() - cpu0
            result = {
                "jobs": jobs,
                "received": got["count"],
                "seconds": round(t1 - t0, 3),
                "jobs_per_s": round(got["count"] / max(t1 - t0, 1e-9)),
                "glue_cpu_s": round(cpu, 3),
                "glue_cpu_us_per_job": round(cpu / max(got["count"], 1) * 1e6, 1),
            }
            return {"result": result, "glue": glue, "task": task}

        async def main() -> None:
            if args.target == "inprocess":
                embedded.extend(await embedded_server(port))
                # The subscribers connect to the server in this loop.
                await asyncio.get_running_loop().run_in_executor(None, start_sink)
            warm = await phase(args.warmup) if args.warmup else None
            if warm is not None:
                warm["glue"].stop()
                await warm["task"]
            if sink is not None:
                await asyncio.get_running_loop().run_in_executor(
                    None, ask, here, "reset"
                )
            else:
                tally.__init__()  # type: ignore[misc]
            watch = GCWatch()
            gc.callbacks.append(watch)
            if args.gc == "off":  # diagnosis only: what the collector costs
                gc.disable()
            elif args.gc == "tuned":  # what a server could do: fewer, later passes
                gc.freeze()
                gc.set_threshold(50_000, 20, 100)
            p1 = await phase(args.jobs)
            out["throughput"] = p1["result"]
            out["throughput"]["gc"] = watch.summary()
            watch.pauses.clear()
            out["glue_stats"] = p1["glue"].stats.as_dict()
            rate = args.latency_rate or max(1.0, out["throughput"]["jobs_per_s"] / 2)
            if args.latency_seconds > 0:
                if sink is not None:
                    await asyncio.get_running_loop().run_in_executor(
                        None, ask, here, "reset"
                    )
                else:
                    tally.__init__()  # type: ignore[misc]
                prod = ctx.Process(
                    target=_producer_main,
                    args=(redis.url, rate, args.latency_seconds, args.forums, 10**8),
                )
                prod.start()
                await asyncio.get_running_loop().run_in_executor(None, prod.join)
                expected = int(rate * args.latency_seconds * 0.98)
                if sink is None:
                    deadline = time.time() + 10
                    while tally.count < expected and time.time() < deadline:
                        await asyncio.sleep(0.01)
                    got = {"count": tally.count, "latencies": tally.latencies}
                else:
                    got = await asyncio.get_running_loop().run_in_executor(
                        None, ask, here, ("wait", expected, 10.0)
                    )
                lat = got["latencies"]
                gc.callbacks.remove(watch)
                out["latency"] = {
                    "gc": watch.summary(),
                    "rate": round(rate),
                    "seconds": args.latency_seconds,
                    "received": got["count"],
                    "achieved_rate": round(got["count"] / args.latency_seconds),
                    "p50_ms": round(percentile(lat, 50) * 1000, 2),
                    "p90_ms": round(percentile(lat, 90) * 1000, 2),
                    "p99_ms": round(percentile(lat, 99) * 1000, 2),
                    "max_ms": round(max(lat) * 1000, 2) if lat else None,
                }
            p1["glue"].stop()
            await p1["task"]
            if embedded:
                app, srv, _ = embedded
                srv.close()
                app.drain()
                app.close()

        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.runcall(uvloop.run, main())
            profiler.dump_stats(args.profile)
        else:
            uvloop.run(main())
    finally:
        if procs:
            try:
                here.send("stop")
            except (BrokenPipeError, OSError):
                pass
            for p in procs:
                p.join(5)
                if p.is_alive():
                    p.kill()
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--target",
        choices=("fastpush", "inprocess", "stub", "null"),
        default=None,
        help="receiving end (default: fastpush if its core is built, else stub)",
    )
    ap.add_argument(
        "--jobs", type=int, default=100_000, help="jobs in the throughput phase"
    )
    ap.add_argument(
        "--warmup", type=int, default=5_000, help="jobs run before measuring"
    )
    ap.add_argument(
        "--forums", type=int, default=4, help="forum channels subscribed to"
    )
    ap.add_argument("--concurrency", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--http-connections", type=int, default=4)
    ap.add_argument("--http-pipelining", type=int, default=1)
    ap.add_argument(
        "--http-group-channels",
        action="store_true",
        help="one POST per job for its 4 channels (/pub?id=a/b/c/d)",
    )
    ap.add_argument("--no-claim-notice", action="store_true")
    ap.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="jobs/s in the latency phase (default: half the measured rate)",
    )
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--profile", metavar="FILE", help="cProfile this process to FILE")
    ap.add_argument(
        "--gc",
        choices=("on", "off", "tuned"),
        default="on",
        help="off: no cyclic GC while measuring (diagnosis only); tuned: "
        "gc.freeze() and set_threshold(50000, 20, 100), as a server could",
    )
    args = ap.parse_args()
    if args.target is None:
        try:
            import fastpush._core  # noqa: F401

            args.target = "fastpush"
        except ImportError:
            args.target = "stub"
    result = {
        "bench": "glue",
        "machine": machine(),
        "loop": "uvloop",
        "flags": vars(args),
        **run(args),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
