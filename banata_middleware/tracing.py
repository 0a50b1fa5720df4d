"""OpenTelemetry spans (the optional ``otel`` extra, ``opentelemetry-api`` only).

Off by default: ``BanataAuth(config, tracing=Tracing())`` turns them on. One span a request, named
after its flow (``banata POST /two-factor/verify-totp``, ``banata (app)`` for the guard of the app's
own paths; the route from the route table, never the raw path), and inside it one span a store
operation (``banata.store challenge_answer``: the script's name). The API alone is used: the app's
SDK (its ``TracerProvider``, exporters, sampling) decides where spans go; without one they are no-ops.
Attributes: ``http.route``, ``http.response.status_code`` and ``banata.code`` (the error code), never
a user id, code or secret.
"""

from __future__ import annotations

from typing import Any

from ._extras import missing_extra

try:
    from opentelemetry import trace
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise missing_extra(__name__, "otel", exc) from exc

__all__ = ["Tracing"]


class Tracing:
    """Spans from ``tracer_provider`` (default: the global one the app's SDK set up)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("banata_middleware", tracer_provider=tracer_provider)

    def flow(self, route: str) -> Any:
        """The span of one request (a context manager that makes it current)."""
        return self.tracer.start_as_current_span(f"banata {route}", attributes={"http.route": route})

    def store(self, script: str) -> Any:
        """The span of one store operation; a store failure (its ``AuthError``) is recorded on it."""
        return self.tracer.start_as_current_span(f"banata.store {script}", attributes={"banata.op": script})
