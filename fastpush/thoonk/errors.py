"""Exceptions of the Thoonk client (names follow thoonk.py's)."""

from __future__ import annotations


class ThoonkError(Exception):
    """Base class."""


class FeedExists(ThoonkError):
    """create_feed: the name is already registered."""


class FeedDoesNotExist(ThoonkError):
    """The name is not registered, or has no ``type`` yet (§3)."""


class WrongFeedType(ThoonkError):
    """The name is registered with another type than the one asked for."""


class Empty(ThoonkError):
    """get(timeout) found no job in time."""
