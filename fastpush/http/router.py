"""Location matching and channels_path variables, as nginx does them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastpush.config import Location

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class Router:
    """nginx order: the longest prefix location, unless a regex matches.

    Regex locations are tried in file order and the first match wins;
    when none matches, the longest matching prefix location is used.
    """

    def __init__(self, locations: Sequence[Location]) -> None:
        self.prefixes = sorted(
            (loc for loc in locations if loc.path is not None),
            key=lambda loc: len(loc.path or ""),
            reverse=True,
        )
        self.regexes = [loc for loc in locations if loc.pattern is not None]

    def match(self, path: str) -> tuple[Location, tuple[str, ...]] | None:
        for loc in self.regexes:
            assert loc.pattern is not None
            m = loc.pattern.search(path)
            if m is not None:
                return loc, tuple(g or "" for g in m.groups())
        for loc in self.prefixes:
            if path.startswith(loc.path or ""):
                return loc, ()
        return None


def expand(
    template: str,
    *,
    captures: tuple[str, ...],
    args: Mapping[str, str],
    headers: Mapping[str, str],
    path: str,
    remote_addr: str,
) -> str:
    """Evaluate nginx variables ($arg_x, $1, $http_x, $uri, ...) in template."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name.isdigit():
            i = int(name)
            return captures[i - 1] if 0 < i <= len(captures) else ""
        if name.startswith("arg_"):
            return args.get(name[4:], "")
        if name.startswith("http_"):
            return headers.get(name[5:].replace("_", "-"), "")
        if name.startswith("cookie_"):
            return _cookie(headers.get("cookie", ""), name[7:])
        if name in ("uri", "document_uri"):
            return path
        if name == "remote_addr":
            return remote_addr
        if name == "host":
            return headers.get("host", "")
        return ""

    return _VARIABLE.sub(value, template)


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""
