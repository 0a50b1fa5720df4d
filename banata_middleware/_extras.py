"""The message for a missing optional dependency: which extra of ``banata-middleware`` brings it."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(module: str, extra: str, exc: ModuleNotFoundError) -> ImportError:
    """``raise missing_extra(__name__, "redis", exc) from exc`` in an ``except ModuleNotFoundError``.

    A bare ``No module named 'redis'`` does not say that the fix is an extra of this package."""
    return ImportError(
        f"{module} needs the {extra!r} extra (missing module {exc.name!r}): "
        f'pip install "banata-middleware[{extra}]"',
        name=exc.name,
    )
