"""An asyncio Thoonk client, wire-compatible with thoonk.py (``feed.*`` schema).

Pure Python on redis-py's asyncio client; see docs/glue.md and
/work/shared/thoonk-protocol.md for what is written where.
"""

from __future__ import annotations

from fastpush.thoonk.client import Thoonk, connect
from fastpush.thoonk.errors import (
    Empty,
    FeedDoesNotExist,
    FeedExists,
    ThoonkError,
    WrongFeedType,
)
from fastpush.thoonk.feed import Feed
from fastpush.thoonk.job import CLAIMED_BY_OTHER, NOT_CLAIMED, OK, Job, JobQueue
from fastpush.thoonk.keys import FeedKeys, JobKeys
from fastpush.thoonk.listener import FinishListener

__all__ = [
    "CLAIMED_BY_OTHER",
    "NOT_CLAIMED",
    "OK",
    "Empty",
    "Feed",
    "FeedDoesNotExist",
    "FeedExists",
    "FeedKeys",
    "FinishListener",
    "Job",
    "JobKeys",
    "JobQueue",
    "Thoonk",
    "ThoonkError",
    "WrongFeedType",
    "connect",
]
