"""Flask view helpers, for apps wrapped with ``app.wsgi_app = BanataMiddleware(app.wsgi_app, auth)``.

.. code-block:: python

    from banata_middleware.adapters.flask import current_identity, require_fresh_second_factor

    @app.post("/account/delete")
    @require_fresh_second_factor(max_age=300)
    def delete_account():
        user_id = current_identity().user_id
        ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec

from .._extras import missing_extra

try:
    from flask import request
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "flask", exc) from exc

from ..http import Identity
from .werkzeug import fresh_second_factor_refusal

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

__all__ = ["current_identity", "require_fresh_second_factor"]

P = ParamSpec("P")


def current_identity() -> Identity:
    """The signed-in caller of the current request. Raises ``LookupError`` on a public path (the
    middleware lets those through without looking at the session)."""
    identity = request.environ.get("banata")
    if not isinstance(identity, Identity):
        raise LookupError("no identity on this request: it is a public path, or BanataMiddleware is missing")
    return identity


def require_fresh_second_factor(
    max_age: int = 300,
) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """Refuse the view with 403 ``FRESH_TWO_FACTOR_REQUIRED`` unless the caller answered a second
    factor within ``max_age`` seconds (by the auth's clock). The client steps up with
    ``POST /two-factor/verify-totp`` and retries."""

    def decorate(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            refusal = fresh_second_factor_refusal(request.environ, max_age)
            if refusal is not None:
                return refusal
            return view(*args, **kwargs)

        return guarded

    return decorate
