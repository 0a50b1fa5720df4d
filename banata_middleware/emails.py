"""One canonical form per email address: what is stored, looked up and put in the otpauth label.

Two strings that a person reads as one address must give one account (or one refusal), so:

- the syntax is checked by ``email-validator`` (RFC 5321/5322 with its safety rules: no quoted local
  parts, no comments, no control, format or invisible characters such as U+200B or a soft hyphen),
  never by hand;
- the local part must be ASCII. Unicode local parts invite look-alikes (Cyrillic ``а``, fullwidth
  letters, combining accents) that no normalization folds together, and mail systems treat them
  inconsistently; better-auth and Django accept ASCII local parts only, and so do we;
- the domain is put in its IDNA 2008 A-label form (``bücher.example`` -> ``xn--bcher-kva.example``,
  via the ``idna`` package, inside email-validator), after NFC; one trailing dot (the DNS root) is
  dropped;
- the whole address is lower-cased (local parts are case-insensitive in practice).

The canonical form is the account's key: the record store's ``accounts.email`` is unique, so two
spellings of one address can never make two accounts, even when their sign-ups race.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from .errors import AuthError

__all__ = ["canonical_email"]

MAX_LENGTH = 254  # RFC 5321's path limit, less the angle brackets


def _invalid(reason: str) -> AuthError:
    return AuthError(400, "VALIDATION_ERROR", f"'email' must be an email address: {reason}")


def canonical_email(raw: str) -> str:
    """The canonical form of ``raw``, or ``AuthError(400, VALIDATION_ERROR)``."""
    text = raw.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    local = text.rpartition("@")[0]
    if not local.isascii():
        raise _invalid("the part before the @-sign must be ASCII")
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False,
                                allow_quoted_local=False, allow_domain_literal=False, allow_display_name=False)
    except EmailNotValidError as exc:
        raise _invalid(str(exc)) from None
    email = result.ascii_email
    if not email or len(email) > MAX_LENGTH:
        raise _invalid("too long")
    return email.lower()

