"""The one error type. Both adapters render it the same way: ``{"code", "message", ...extra}``."""

from __future__ import annotations

from typing import Any

__all__ = ["AuthError"]


class AuthError(Exception):
    """A refusal with an HTTP status, a stable UPPER_SNAKE code and a human message.

    ``extra`` adds fields to the JSON body (``attemptsRemaining``, ``twoFactorMethods``);
    ``headers`` adds response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}
