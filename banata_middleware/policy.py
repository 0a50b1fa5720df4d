"""Which path needs what: public, protected, protected with a fresh second factor, or with a
phishing-resistant one."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote

__all__ = ["PHISHING_RESISTANT_AMR", "PathPolicy", "Rule", "ambiguous_path"]

# The RFC 8176 'amr' values of a phishing-resistant factor: proof of possession of a key, which only
# a passkey gives here (WebAuthn binds its signature to the site's origin, so a look-alike site
# relaying the sign-in gets nothing it can use; a TOTP or backup code can be typed into one).
PHISHING_RESISTANT_AMR = frozenset({"pop", "hwk", "swk"})

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
    phishing_resistant: bool = False  # the session's sign-in or a step-up used a passkey


PUBLIC = Rule(public=True)
PROTECTED = Rule()
PHISHING_RESISTANT = Rule(phishing_resistant=True)


class PathPolicy:
    """Exact paths and ``prefix*`` patterns; the longest matching pattern wins."""

    def __init__(self, public: Iterable[str], fresh: Mapping[str, int], *, protect_by_default: bool,
                 phishing_resistant: Iterable[str] = ()) -> None:
        self._exact: dict[str, Rule] = {}
        self._prefixes: list[tuple[str, Rule]] = []
        for pattern, rule in [*((p, PUBLIC) for p in public), *((p, Rule(fresh_max_age=a)) for p, a in fresh.items())]:
            if pattern.endswith("*"):
                self._prefixes.append((pattern[:-1], rule))
            else:
                self._exact[pattern] = rule
        # Matched apart from the rules above, so that a longer pattern (a fresh rule under "/admin/*")
        # cannot drop the requirement: any matching pattern asks for it. A public path stays public
        # (it passes untouched; no session is read).
        self._pr_exact = frozenset(p for p in phishing_resistant if not p.endswith("*"))
        self._pr_prefixes = tuple(p[:-1] for p in phishing_resistant if p.endswith("*"))
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        # Every prefix at once: most paths match none, and one C-level test tells so.
        self._any_prefix = tuple(prefix for prefix, _ in self._prefixes)
        self._phishing_resistant = bool(self._pr_exact or self._pr_prefixes)
        self._default = PROTECTED if protect_by_default else PUBLIC

    def rule(self, path: str) -> Rule:
        rule = self._exact.get(path)
        if rule is None and path.startswith(self._any_prefix):
            rule = self._match(path)
        if self._phishing_resistant and (path in self._pr_exact or path.startswith(self._pr_prefixes)):
            # Protected even with protect_by_default off; an explicit public pattern stays public.
            if rule is None:
                return PHISHING_RESISTANT
            if not rule.public:
                return replace(rule, phishing_resistant=True)
        return self._default if rule is None else rule

    def _match(self, path: str) -> Rule | None:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        for prefix, rule in self._prefixes:
            if path.startswith(prefix):
                return rule
        return None
