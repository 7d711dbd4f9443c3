"""The compute steps as plain functions, shared by the mixins and ``compose``.

A post, as the application's hooks put it on the queue::

    {"id": 7, "forum": "cats", "thread": 12, "author": 42,
     "message": "<p>hi</p>", "action": "create", ...}

and the final client format, made once per post::

    {"type":"post","action":"create","post":{"id":"7","forum":"cats",
     "thread":"12","author":{"id":"42","name":"..."},"message":"<p>hi</p>",
     "createdAt":"..."}}
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import zlib
from typing import Any

from fastpush.pipeline.base import BadInput

#: The fields a post must have, and the ones the client format may carry.
POST_REQUIRED = ("id", "forum", "thread", "author", "message")
POST_OPTIONAL = ("action", "author_name", "created_at", "parent", "email", "ip_address")
#: What must never reach a browser.
PRIVATE_FIELDS = ("email", "ip_address", "ip", "password", "user_agent")
ACTIONS = ("create", "update", "delete")

_loads = json.loads
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def parse_json(raw: bytes) -> Any:
    """Bytes to data; anything that is not JSON is bad input."""
    try:
        # Decoding first skips json's encoding sniffing for the usual UTF-8;
        # anything else (UTF-16/32 JSON) takes the sniffing path.
        try:
            text: str | bytes = raw.decode()
        except UnicodeDecodeError:
            text = raw
        return _loads(text)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadInput(f"job body is not JSON: {exc}") from None


def _ident(value: Any, field: str) -> str:
    # Ids may be ints (Django pks) or slugs (forums); bools and containers
    # are mistakes, never channel names.
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str and value and len(value) <= 200 and "/" not in value:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadInput(f"post field {field!r} must be an int or a string")
    text = str(value)
    if not text or "/" in text or len(text) > 200:
        raise BadInput(f"post field {field!r} is not a usable id: {text[:40]!r}")
    return text


def post_channels(data: Any, user: bool = True) -> tuple[str, ...]:
    """The DISQUS multiplex: one post goes to its forum, thread, author and
    post channels (``user=False`` leaves the author's channel out)."""
    if not isinstance(data, dict):
        raise BadInput("a post must be a JSON object")
    try:
        forum, thread, author, pid = (
            data["forum"],
            data["thread"],
            data["author"],
            data["id"],
        )
    except KeyError as exc:
        raise BadInput(f"post has no {exc.args[0]!r}") from None
    forum, thread, pid = (
        _ident(forum, "forum"),
        _ident(thread, "thread"),
        _ident(pid, "id"),
    )
    author_id = author.get("id") if isinstance(author, dict) else author
    if user and author_id is not None:
        return (
            f"forum:{forum}",
            f"thread:{thread}",
            f"user:{_ident(author_id, 'author')}",
            f"post:{pid}",
        )
    return (f"forum:{forum}", f"thread:{thread}", f"post:{pid}")


def clean_post(data: Any) -> dict[str, Any]:
    """Validate a post and keep only the fields we know, normalised."""
    if not isinstance(data, dict):
        raise BadInput("a post must be a JSON object")
    for field in POST_REQUIRED:
        if field not in data:
            raise BadInput(f"post has no {field!r}")
    message = data["message"]
    if message is None:
        message = ""
    elif not isinstance(message, str):
        raise BadInput("post field 'message' must be a string")
    action = data.get("action", "create")
    if action not in ACTIONS:
        raise BadInput(f"post action must be one of {ACTIONS}")
    author = data["author"]
    if isinstance(author, dict):
        author_id, name = author.get("id"), author.get("name")
    else:
        author_id, name = author, data.get("author_name")
    post = {
        "id": _ident(data["id"], "id"),
        "forum": _ident(data["forum"], "forum"),
        "thread": _ident(data["thread"], "thread"),
        "author": None if author_id is None else _ident(author_id, "author"),
        "author_name": None if name is None else str(name),
        "message": message.strip(),
        "action": action,
    }
    for field in ("created_at", "parent", "email", "ip_address"):
        if data.get(field) is not None:
            post[field] = data[field]
    return post


def anonymize(post: dict[str, Any]) -> dict[str, Any]:
    """Nobody can tell who wrote it: no author id or name, no private field.

    The author id is replaced by a stable pseudonym so a client can still
    group one author's posts on a page without learning who it is."""
    out = {k: v for k, v in post.items() if k not in PRIVATE_FIELDS}
    author = out.get("author")
    if author is not None:
        digest = hashlib.blake2s(str(author).encode(), digest_size=6).hexdigest()
        out["author"] = f"anon-{digest}"
    out["author_name"] = "Anonymous"
    return out


def secure(post: dict[str, Any]) -> dict[str, Any]:
    """Safe to put in a page: private fields dropped, text HTML-escaped."""
    out = {k: v for k, v in post.items() if k not in PRIVATE_FIELDS}
    for field in ("message", "author_name"):
        value = out.get(field)
        if isinstance(value, str):
            out[field] = html.escape(value, quote=True)
    return out


def to_client(post: dict[str, Any]) -> dict[str, Any]:
    """The schema transform: our post to the client's event format."""
    client_post: dict[str, Any] = {
        "id": post["id"],
        "forum": post["forum"],
        "thread": post["thread"],
        "author": {"id": post.get("author"), "name": post.get("author_name")},
        "message": post["message"] if post.get("action") != "delete" else "",
    }
    if "created_at" in post:
        client_post["createdAt"] = post["created_at"]
    if "parent" in post:
        client_post["parent"] = post["parent"]
    return {"type": "post", "action": post.get("action", "create"), "post": client_post}


_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) uses


def client_json(post: dict[str, Any]) -> bytes:
    """``format_json(to_client(post))`` in one step, byte for byte the same,
    without building the intermediate dicts (the default pipeline's hot
    path)."""
    author, name = post.get("author"), post.get("author_name")
    action = post.get("action", "create")
    out = (
        '{"type":"post","action":%s,"post":{"id":%s,"forum":%s,"thread":%s,'
        '"author":{"id":%s,"name":%s},"message":%s'
        % (
            _str(action),
            _str(post["id"]),
            _str(post["forum"]),
            _str(post["thread"]),
            "null" if author is None else _str(author),
            "null" if name is None else _str(name),
            _str(post["message"] if action != "delete" else ""),
        )
    )
    if "created_at" in post:
        out += ',"createdAt":' + _dumps(post["created_at"])
    if "parent" in post:
        out += ',"parent":' + _dumps(post["parent"])
    return (out + "}}").encode()


def format_json(data: Any) -> bytes:
    """Compact JSON, UTF-8, no spaces: the body every subscriber receives."""
    try:
        return _dumps(data).encode()
    except (TypeError, ValueError) as exc:
        raise BadInput(f"cannot format as JSON: {exc}") from None


def compress(
    body: bytes, method: str = "deflate", level: int = 6, b64: bool = True
) -> bytes:
    """Compress once for every subscriber.  push-stream delivers text frames,
    so by default the compressed bytes are base64-encoded; a client inflates
    with ``atob`` + a deflate-raw stream (or pako)."""
    if method == "deflate":  # raw deflate, no zlib header: DecompressionStream
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        out = c.compress(body) + c.flush()
    elif method == "zlib":
        out = zlib.compress(body, level)
    elif method == "gzip":
        out = gzip.compress(body, level, mtime=0)
    else:
        raise ValueError(f"unknown compression {method!r}")
    return base64.b64encode(out) if b64 else out


def decompress(body: bytes, method: str = "deflate", b64: bool = True) -> bytes:
    """The inverse of ``compress`` (for tests and consumers in Python)."""
    raw = base64.b64decode(body) if b64 else body
    if method == "deflate":
        return zlib.decompress(raw, -15)
    if method == "zlib":
        return zlib.decompress(raw)
    if method == "gzip":
        return gzip.decompress(raw)
    raise ValueError(f"unknown compression {method!r}")
