"""Password normalization (NIST SP 800-63B §5.1.1.2: Unicode passwords SHOULD be normalized).

NFKC, so that one password typed with composed or decomposed characters (``ä`` vs. ``a`` + U+0308),
or with compatibility forms, hashes the same. Applied at sign-up and at every check
(``Flows._password_matches``), so every stored hash is of the normalized form.
"""

from __future__ import annotations

import unicodedata

__all__ = ["normalize_password"]


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)
