"""Fixtures for the glue tests: a real redis-server, and a coroutine runner
over both event loops that fails the test on any unhandled loop exception."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import RedisServer  # noqa: E402

T = TypeVar("T")
Runner = Callable[[Awaitable[T]], T]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the shared server."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of the test's own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _run_on(factory: Callable[[], asyncio.AbstractEventLoop], coro: Awaitable[T]) -> T:
    errors: list[dict[str, Any]] = []
    loop = factory()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        result = loop.run_until_complete(coro)
        # Let tasks that are closing finish their last callbacks.
        loop.run_until_complete(asyncio.sleep(0))
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    assert not pending, f"tasks left running: {pending}"
    assert not errors, f"unhandled loop exceptions: {errors}"
    return result


@pytest.fixture(params=["asyncio", "uvloop"])
def run_any(request: pytest.FixtureRequest) -> Runner[Any]:
    """Run a coroutine to completion, under each event loop."""
    factory = (
        asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop
    )
    return lambda coro: _run_on(factory, coro)


@pytest.fixture
def run() -> Runner[Any]:
    """Run a coroutine to completion under uvloop (what the glue runs on)."""
    return lambda coro: _run_on(uvloop.new_event_loop, coro)
