"""One implementation of every flow, a module per concern. Each flow is a generator (see
``effects``): it yields store operations and returns a ``Response``; nothing here does I/O, so the
same code serves WSGI and ASGI.

- ``session``: the session core: the caller and the guard, the audit helpers, the cookies, and
  issuing a session (``signed_in``, the one ending of every sign-in);
- ``primary``: sign-up, sign-in, sign-out, get-session, the password checks and throttles;
- ``two_factor``: TOTP and backup codes: enable, disable, URI, codes, verify;
- ``admin``: what the host and its administrators call: import a secret, reset, revoke;
- ``passkeys``: registration, passwordless sign-in, passkey as the second factor;
- ``sessions``: list and end sessions and trusted devices;
- ``authenticators``: list, rename and remove a user's authenticator apps;
- ``otp``: one-time codes by message (email, SMS): send, verify, enrol (when configured).

The first four are layers of one object (each builds on the public methods of the one below); the
last three are composed on it. Each module declares its routes (``routes()``: path -> (method,
handler)) and the cookies it owns (``cookies``); ``Flows`` gathers both for the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..audit import AuditLog
from ..config import BanataAuthConfig
from ..crypto import Keyring, PasswordHasher
from .admin import AdminFlows
from .authenticators import AuthenticatorFlows
from .session import Caller, Guarded, Handler, PasswordVerifier, Routes, SignInResult, iso
from .sessions import SessionFlows

if TYPE_CHECKING:
    from .otp import OtpFlows
    from .passkeys import PasskeyFlows

__all__ = ["Caller", "Flows", "Guarded", "Handler", "Routes", "SignInResult", "iso"]


class Flows(AdminFlows):
    """Every flow of one configured ``BanataAuth``: the layered core, plus the sessions module,
    (when two-factor is on) the authenticator apps module and (when passkeys are on) the passkeys
    module composed on it."""

    def __init__(
        self,
        config: BanataAuthConfig,
        *,
        keyring: Keyring,
        hasher: PasswordHasher,
        audit: AuditLog,
        verify_password: PasswordVerifier | None = None,
        account_name: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(config, keyring=keyring, hasher=hasher, audit=audit, verify_password=verify_password,
                         account_name=account_name)
        self.sessions = SessionFlows(self)
        self.authenticators = AuthenticatorFlows(self) if config.auth_methods.two_factor else None
        self.passkeys: PasskeyFlows | None = None
        if config.auth_methods.passkey:
            from .passkeys import PasskeyFlows  # py_webauthn is the 'passkeys' extra

            self.passkeys = PasskeyFlows(self)
        self.otp: OtpFlows | None = None
        if config.otp is not None and config.auth_methods.two_factor:
            from .otp import OtpFlows

            self.otp = OtpFlows(self, config.otp)
        composed = (self.sessions, *(m for m in (self.authenticators, self.passkeys, self.otp) if m is not None))
        #: Every cookie the flows set (the gateway's and the OpenAPI document's list).
        self.cookie_names: tuple[str, ...] = (*self.cookies, *(n for m in composed for n in m.cookies))
        self._composed_routes: Routes = {path: route for m in composed for path, route in m.routes().items()}

    def routes(self) -> Routes:
        return {**super().routes(), **self._composed_routes}
