"""Virtual devices and clocks for testing two-factor flows end to end.

- :class:`VirtualAuthenticator`: a phone TOTP app (RFC 6238) fed ``otpauth://`` URIs.
- :class:`VirtualPasskey`: a WebAuthn authenticator with real keys, answering py_webauthn
  options JSON with the JSON a browser posts.
- :mod:`clocks`: frozen, offset and drifting clocks, ``skew()`` and ``freeze()``.
"""

from . import clocks
from .authenticator import Account, VirtualAuthenticator
from .passkey import CeremonyRefused, PasskeyCredential, VirtualPasskey

__all__ = [
    "Account",
    "CeremonyRefused",
    "PasskeyCredential",
    "VirtualAuthenticator",
    "VirtualPasskey",
    "clocks",
]
