"""Thoonk feeds (thoonk-protocol.md §4): a bounded, ordered set of items with
publish/edit/retract notices.  The pipeline's Thoonk-feed publisher writes here
so that thoonk listeners see every formatted message."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, cast

from redis.exceptions import WatchError

from fastpush.thoonk.keys import FeedKeys

if TYPE_CHECKING:
    from fastpush.thoonk.client import Thoonk
    from fastpush.thoonk.job import Data

# Replies are bytes (client.connect sets decode_responses=False); redis-py
# annotates them ``bytes | str`` for either setting, hence the casts below.


def _b(value: Data) -> bytes:
    return (
        value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    )


class Feed:
    """One Thoonk feed.  Get one with ``await thoonk.feed(name, config)``.

    ``score_unit``: thoonk.py scores items with float seconds, the contract
    and thoonk.js with milliseconds (§4.1).  Use the unit of the feed's other
    writers so items stay in order; the default follows thoonk.py.
    """

    def __init__(self, thoonk: Thoonk, name: str, *, score_unit: str = "s") -> None:
        if score_unit not in ("s", "ms"):
            raise ValueError("score_unit is 's' or 'ms'")
        self.thoonk = thoonk
        self.redis = thoonk.redis
        self.name = name
        self.keys = FeedKeys(name)
        self.score_unit = score_unit

    def _score(self) -> float:
        now = time.time()
        return int(now * 1000) if self.score_unit == "ms" else now

    async def publish(self, item: Data, item_id: Data | None = None) -> str:
        """Publish (or replace) an item, trimming to ``max_length`` (§4.1)."""
        k = self.keys
        pid = _b(item_id) if item_id is not None else uuid.uuid4().hex.encode()
        data = _b(item)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(k.ids)
                    limit = int(await pipe.hget(k.config, "max_length") or 0)
                    old = (
                        cast("list[bytes]", await pipe.zrange(k.ids, 0, -limit))
                        if limit > 0
                        else []
                    )
                    pipe.multi()
                    for oid in old:
                        if oid != pid:
                            pipe.zrem(k.ids, oid)
                            pipe.hdel(k.items, oid)
                            pipe.publish(k.retract, oid)
                    pipe.zadd(k.ids, {pid: self._score()})
                    pipe.incr(k.publishes)
                    pipe.hset(k.items, pid, data)
                    res = await pipe.execute()
                    break
                except WatchError:
                    continue
        # The notice follows the transaction, as in thoonk.py; a new id is a
        # publish, a known one an edit.
        channel = k.publish if res[-3] else k.edit
        await self.redis.publish(channel, pid + b"\0" + data)
        return pid.decode("utf-8", "surrogateescape")

    async def retract(self, item_id: Data) -> bool:
        k, raw = self.keys, _b(item_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(k.ids)
                    if await pipe.zrank(k.ids, raw) is None:
                        await pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.zrem(k.ids, raw)
                    pipe.hdel(k.items, raw)
                    pipe.publish(k.retract, raw)
                    await pipe.execute()
                    return True
                except WatchError:
                    continue

    async def get_ids(self) -> list[str]:
        """Ids, oldest first."""
        ids = cast("list[bytes]", await self.redis.zrange(self.keys.ids, 0, -1))
        return [i.decode("utf-8", "surrogateescape") for i in ids]

    async def get_item(self, item_id: Data) -> bytes | None:
        return cast("bytes | None", await self.redis.hget(self.keys.items, _b(item_id)))

    async def get_all(self) -> dict[str, bytes]:
        raw = cast("dict[bytes, bytes]", await self.redis.hgetall(self.keys.items))
        return {k.decode("utf-8", "surrogateescape"): v for k, v in raw.items()}
