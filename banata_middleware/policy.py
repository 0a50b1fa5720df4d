"""Which path needs what: public, protected, or protected with a fresh second factor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["PathPolicy", "Rule"]


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
