"""Dump a Redis database as plain data, with job ids and times replaced by
stable placeholders, so two runs of the same scenario can be compared."""

from __future__ import annotations

from typing import Any

import redis


def dump(url: str, ids: list[str], db: int | None = None) -> dict[str, Any]:
    client = (
        redis.Redis.from_url(url, db=db)
        if db is not None
        else redis.Redis.from_url(url)
    )
    names = {job_id.encode(): f"<J{n}>".encode() for n, job_id in enumerate(ids)}

    def norm(value: bytes) -> bytes:
        for raw, name in names.items():
            value = value.replace(raw, name)
        return value

    def score(value: float) -> str:
        # Thoonk writes ms everywhere except feed scores from thoonk.py and its
        # retry (seconds); keep the unit, drop the instant.
        return "<ms>" if value >= 1e11 else "<s>"

    out: dict[str, Any] = {}
    try:
        for key in sorted(client.keys("*")):
            kind = client.type(key).decode()
            if kind == "string":
                value: Any = norm(client.get(key))
            elif kind == "list":
                value = [norm(v) for v in client.lrange(key, 0, -1)]
            elif kind == "set":
                value = sorted(norm(v) for v in client.smembers(key))
            elif kind == "hash":
                value = {norm(k): norm(v) for k, v in client.hgetall(key).items()}
                if key.startswith(b"feed.config:"):
                    pass
            elif kind == "zset":
                pairs = client.zrange(key, 0, -1, withscores=True)
                value = sorted((norm(m), score(s)) for m, s in pairs)
            else:  # pragma: no cover
                value = kind
            out[norm(key).decode()] = (kind, value)
    finally:
        client.close()
    return out
