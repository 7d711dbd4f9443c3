"""The Thoonk registry on redis-py's asyncio client (thoonk-protocol.md §3)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from fastpush.thoonk import keys
from fastpush.thoonk.errors import FeedDoesNotExist, FeedExists, WrongFeedType

if TYPE_CHECKING:
    from fastpush.thoonk.feed import Feed
    from fastpush.thoonk.job import JobQueue

# Replies are bytes (connect() sets decode_responses=False); redis-py
# annotates them ``bytes | str`` for either setting, hence the casts below.


def connect(url: str = "redis://127.0.0.1:6379/0", **kwargs: Any) -> aioredis.Redis:
    """A binary-safe asyncio client (bodies are bytes; hiredis parses when
    installed).  ``health_check_interval`` makes a pooled connection that sat
    idle across a Redis restart get checked before use instead of failing."""
    kwargs.setdefault("health_check_interval", 5)
    kwargs.setdefault("socket_keepalive", True)
    return aioredis.Redis.from_url(url, decode_responses=False, **kwargs)


class Thoonk:
    """A Thoonk client: creates, opens, configures and deletes objects.

    ``Thoonk(redis)`` borrows a client (you close it); ``Thoonk.from_url`` owns
    one (``aclose`` closes it).
    """

    def __init__(self, redis: aioredis.Redis, *, owns_client: bool = False) -> None:
        self.redis = redis
        self.instance = uuid.uuid4().hex
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Thoonk:
        return cls(connect(url, **kwargs), owns_client=True)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.redis.aclose()

    async def __aenter__(self) -> Thoonk:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # Registry ---------------------------------------------------------------

    async def feed_exists(self, name: str) -> bool:
        return bool(await self.redis.sismember(keys.FEEDS, name))

    async def feed_names(self) -> set[str]:
        names = cast("set[bytes]", await self.redis.smembers(keys.FEEDS))
        return {n.decode() for n in names}

    async def feed_type(self, name: str, wait: float = 1.0) -> str:
        """The ``type`` of a registered object.  Creation is two steps (SADD,
        then the config), so a name seen without a type is retried for up to
        ``wait`` seconds before it counts as missing (§3)."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            ftype = cast(
                "bytes | None", await self.redis.hget(f"feed.config:{name}", "type")
            )
            if ftype is not None:
                return ftype.decode()
            if not await self.feed_exists(name):
                raise FeedDoesNotExist(name)
            if asyncio.get_running_loop().time() >= deadline:
                raise FeedDoesNotExist(name)
            await asyncio.sleep(0.02)

    async def create_feed(self, name: str, config: Mapping[str, Any]) -> None:
        """SADD feeds, the config in one MULTI, then newfeed and conffeed."""
        if not await self.redis.sadd(keys.FEEDS, name):
            raise FeedExists(name)
        await self.set_config(name, config, new_feed=True)

    async def set_config(
        self, name: str, config: Mapping[str, Any], new_feed: bool = False
    ) -> None:
        if not await self.feed_exists(name):
            raise FeedDoesNotExist(name)
        fields = {str(k): str(v) for k, v in config.items()}
        # Both reference clients add type=feed to a config that lacks it, which
        # silently re-types a job queue (§3); never send a config without it.
        fields.setdefault("type", "feed")
        async with self.redis.pipeline(transaction=True) as pipe:
            for field, value in fields.items():
                pipe.hset(f"feed.config:{name}", field, value)
            await pipe.execute()
        notice = f"{name}\0{self.instance}"
        if new_feed:
            await self.redis.publish(keys.NEWFEED, notice)
        await self.redis.publish(keys.CONFFEED, notice)

    async def get_config(self, name: str) -> dict[str, str]:
        raw = cast(
            "dict[bytes, bytes]", await self.redis.hgetall(f"feed.config:{name}")
        )
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def _open(self, name: str, ftype: str, config: Mapping[str, Any]) -> None:
        """Create ``name`` as ``ftype`` unless it exists; an existing object
        keeps its config (thoonk.py's ``thoonk.job(name, config)`` too)."""
        try:
            await self.create_feed(name, {**config, "type": ftype})
        except FeedExists:
            found = await self.feed_type(name)
            if found != ftype:
                raise WrongFeedType(f"{name!r} is a {found}, not a {ftype}") from None

    async def job(self, name: str, config: Mapping[str, Any] | None = None) -> JobQueue:
        """Open (creating if needed) the job queue ``name``."""
        from fastpush.thoonk.job import JobQueue

        await self._open(name, "job", config or {})
        return JobQueue(self, name)

    async def feed(self, name: str, config: Mapping[str, Any] | None = None) -> Feed:
        """Open (creating if needed) the feed ``name``."""
        from fastpush.thoonk.feed import Feed

        await self._open(name, "feed", config or {})
        return Feed(self, name)

    async def delete_feed(self, name: str) -> None:
        """WATCH feeds; SISMEMBER; MULTI SREM + DEL keys + PUBLISH delfeed."""
        ftype = await self.feed_type(name)
        if ftype == "job":
            names: tuple[str, ...] = keys.JobKeys(name).schema()
        else:
            k = keys.FeedKeys(name)
            names = (k.ids, k.items, k.publishes, k.config)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(keys.FEEDS)
                    if not await pipe.sismember(keys.FEEDS, name):
                        raise FeedDoesNotExist(name)
                    pipe.multi()
                    pipe.srem(keys.FEEDS, name)
                    pipe.delete(*names)
                    pipe.publish(keys.DELFEED, f"{name}\0{self.instance}")
                    await pipe.execute()
                    return
                except WatchError:
                    continue
