"""The message for a missing optional dependency: which extra of ``banata-middleware`` brings it."""

from __future__ import annotations

__all__ = ["MissingExtraError", "missing_extra"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def missing_extra(module: str, extra: str, exc: ModuleNotFoundError) -> MissingExtraError:
    """``raise missing_extra(__name__, "redis", exc) from exc`` in an ``except ModuleNotFoundError``.

    A bare ``No module named 'redis'`` does not say that the fix is an extra of this package."""
    return MissingExtraError(
        f"{module} needs the {extra!r} extra (missing module {exc.name!r}): "
        f'pip install "banata-middleware[{extra}]"',
        name=exc.name,
    )
