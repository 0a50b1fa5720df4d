"""Which path needs what: public, protected, or protected with a fresh second factor."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["PathPolicy", "Rule", "ambiguous_path"]

_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|00)", re.IGNORECASE)


def ambiguous_path(path: str) -> bool:
    """True for a path that an app may route as another path than the one it reads as: one with a
    ``.``, ``..`` or empty (``//``) segment, a backslash, a NUL or an encoded slash (``%2f``,
    ``%5c``), as given or in any percent-decoded form (``%2e%2e``, ``.%2E``, ``%252e%252e``).

    The gateway refuses these (400) instead of resolving them: Starlette, FastAPI, Flask and
    Django route ``/api/files/../../static/x`` to ``/api/files/{p:path}`` with ``p="../../static/x"``,
    so judging the resolved ``/static/x`` would judge a path the app never routes. Refusing makes
    the judged path and the routed path the same string."""
    # The fast path, for every request: a path without any of these is never ambiguous (five
    # substring tests cost less than one regex search).
    if not ("%" in path or "/." in path or "//" in path or "\\" in path or "\x00" in path or path[:1] == "."):
        return False
    for _ in range(4):
        if "\\" in path or "\x00" in path or _ENCODED_SEPARATOR.search(path):
            return True
        segments = path.split("/")
        if "." in segments or ".." in segments or "" in segments[1:-1]:
            return True
        decoded = unquote(path)
        if decoded == path:
            return False
        path = decoded
    return True  # still percent-encoded after four decodings: no real client sends that


@dataclass(frozen=True, slots=True)
class Rule:
    public: bool = False
    fresh_max_age: int | None = None  # seconds; None = any session will do


PUBLIC = Rule(public=True)
PROTECTED = Rule()


class PathPolicy:
    """Exact paths and ``prefix*`` patterns; the longest matching pattern wins."""

    def __init__(self, public: Iterable[str], fresh: Mapping[str, int], *, protect_by_default: bool) -> None:
        self._exact: dict[str, Rule] = {}
        self._prefixes: list[tuple[str, Rule]] = []
        for pattern, rule in [*((p, PUBLIC) for p in public), *((p, Rule(fresh_max_age=a)) for p, a in fresh.items())]:
            if pattern.endswith("*"):
                self._prefixes.append((pattern[:-1], rule))
            else:
                self._exact[pattern] = rule
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._default = PROTECTED if protect_by_default else PUBLIC

    def rule(self, path: str) -> Rule:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        for prefix, rule in self._prefixes:
            if path.startswith(prefix):
                return rule
        return self._default
