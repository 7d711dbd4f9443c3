"""Key and channel names of the Thoonk ``feed.*`` schema (thoonk-protocol.md §2).

Names are used verbatim: no prefix, no hash tag, no escaping, exactly like
thoonk.py, so that old producers and workers see the same objects.
"""

from __future__ import annotations

#: The registry of every Thoonk object.
FEEDS = "feeds"
#: Registry notices: ``<name>\0<instance>``.
NEWFEED = "newfeed"
CONFFEED = "conffeed"
DELFEED = "delfeed"

# Our own extensions live under a prefix no Thoonk client reads (§14: "put
# extensions under new key names").
EXT_PREFIX = "fastpush"


class FeedKeys:
    """Keys shared by every object type."""

    __slots__ = (
        "name",
        "config",
        "ids",
        "items",
        "publishes",
        "publish",
        "edit",
        "retract",
    )

    def __init__(self, name: str) -> None:
        if "\0" in name:
            raise ValueError("a Thoonk object name cannot contain NUL")
        self.name = name
        self.config = f"feed.config:{name}"
        self.ids = f"feed.ids:{name}"
        self.items = f"feed.items:{name}"
        self.publishes = f"feed.publishes:{name}"
        # Channels (a separate namespace from keys in Redis).
        self.publish = f"feed.publish:{name}"
        self.edit = f"feed.edit:{name}"
        self.retract = f"feed.retract:{name}"


class JobKeys(FeedKeys):
    """Keys and channels of a job queue (§2.1, §2.2)."""

    __slots__ = (
        "published",
        "claimed",
        "cancelled",
        "stalled",
        "finishes",
        "running",
        "finish",
        "errors",
        "stats",
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.published = f"feed.published:{name}"
        self.claimed = f"feed.claimed:{name}"  # also the claim-notice channel
        self.cancelled = f"feed.cancelled:{name}"
        self.stalled = f"feed.stalled:{name}"
        self.finishes = f"feed.finishes:{name}"
        self.running = f"feed.running:{name}"  # never written; deleted on delete
        self.finish = f"job.finish:{name}"  # result channel
        # Extensions: last error per job id, and failure counters per queue.
        self.errors = f"{EXT_PREFIX}.errors:{name}"
        self.stats = f"{EXT_PREFIX}.stats:{name}"

    def schema(self) -> tuple[str, ...]:
        """What a Thoonk delete removes (thoonk.py's list, §3: it misses
        ``feed.published`` and ``feed.finishes``; we remove those too, and our
        extension keys)."""
        return (
            self.ids,
            self.items,
            self.publishes,
            self.config,
            self.claimed,
            self.stalled,
            self.running,
            self.cancelled,
            self.published,
            self.finishes,
            self.errors,
            self.stats,
        )
