"""banata-middleware: a second-factor layer (TOTP, backup codes, passkeys) for any ASGI or WSGI app."""

from .config import AuthMethods, BanataAuthConfig, OtpConfig, PasskeyConfig, PasswordHashing, Policies, TotpPolicy
from .errors import AuthError
from .flows import SignInResult
from .http import Identity
from .service import BanataAuth

__all__ = [
    "AuthError",
    "AuthMethods",
    "BanataAuth",
    "BanataAuthConfig",
    "Identity",
    "OtpConfig",
    "PasskeyConfig",
    "PasswordHashing",
    "Policies",
    "SignInResult",
    "TotpPolicy",
]

__version__ = "0.1.0"
