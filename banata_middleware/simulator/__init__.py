"""Virtual devices and clocks for testing two-factor flows end to end.

- :class:`VirtualAuthenticator`: a phone TOTP app (RFC 6238) fed ``otpauth://`` URIs.
- :class:`VirtualPasskey`: a WebAuthn authenticator with real keys, answering py_webauthn
  options JSON with the JSON a browser posts.
- :mod:`clocks`: frozen, offset and drifting clocks, ``skew()`` and ``freeze()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import clocks
from .authenticator import Account, VirtualAuthenticator

if TYPE_CHECKING:
    from .passkey import CeremonyRefused, PasskeyCredential, VirtualPasskey

__all__ = [
    "Account",
    "CeremonyRefused",
    "PasskeyCredential",
    "VirtualAuthenticator",
    "VirtualPasskey",
    "clocks",
]

_PASSKEY_NAMES = {"CeremonyRefused", "PasskeyCredential", "VirtualPasskey"}


def __getattr__(name: str) -> Any:
    # The passkey half needs cbor2 (the "simulator" extra); importing it lazily keeps
    # `banata-mfa code` and VirtualAuthenticator working on the base install.
    if name in _PASSKEY_NAMES:
        from . import passkey

        return getattr(passkey, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
