"""OpenTelemetry spans (``banata_middleware.tracing``): one span a request named after its route,
the store operations as its children, on both adapters and both stores; a store failure is recorded
on its span; with tracing off nothing is traced."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import FailingStore, Stack

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from banata_middleware.tracing import Tracing


def traced(stack_factory: Callable[..., Stack]) -> tuple[Stack, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return stack_factory(tracing=Tracing(provider)), exporter


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return [s.name for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_a_verification_is_one_flow_span_with_its_store_operations_inside(stack_factory: Callable[..., Stack]) -> None:
    stack, exporter = traced(stack_factory)
    owner = stack.client()
    owner.sign_up("t@example.com")
    device = owner.enable_2fa()
    stack.clock.advance(30)
    api = stack.client()
    api.sign_in("t@example.com")
    exporter.clear()
    r = api.auth("/two-factor/verify-totp", {"code": "000000"})
    assert r.status_code == 401
    r = api.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text
    spans = exporter.get_finished_spans()
    flows = [s for s in spans if s.name == "banata POST /two-factor/verify-totp"]
    assert len(flows) == 2
    wrong, right = flows
    assert wrong.attributes is not None and right.attributes is not None
    assert (wrong.attributes["http.response.status_code"], wrong.attributes["banata.code"]) == (401, "INVALID_CODE")
    assert right.attributes["http.response.status_code"] == 200 and "banata.code" not in right.attributes
    for flow in flows:
        assert flow.parent is None
        # Both stores, in the order of the write rule: the hot state, the record, the SQL decision
        # (the step accepted, or the failure counted), then the challenge's answer in the hot store.
        assert children(spans, flow) == ["banata.store load", "banata.store sql.LoadUser",
                                         "banata.store sql.ProveSecondFactor", "banata.store challenge_answer"]
    # Every span is a flow or one of its store operations: no raw path, no user id in any name.
    assert {s.name for s in spans} == {"banata POST /two-factor/verify-totp", "banata.store load",
                                        "banata.store sql.LoadUser", "banata.store sql.ProveSecondFactor",
                                        "banata.store challenge_answer"}


def test_a_store_failure_is_recorded_on_the_store_span(stack_factory: Callable[..., Stack]) -> None:
    stack, exporter = traced(stack_factory)
    api = stack.client()
    api.sign_up("f@example.com")
    if stack.redis is not None:
        stack.redis.stop()  # the next test's fixture starts it again
    else:
        stack.auth.store = FailingStore()
    exporter.clear()
    assert api.get("/api/me").status_code == 503
    spans = exporter.get_finished_spans()
    flow = next(s for s in spans if s.name == "banata (app)")
    assert flow.attributes is not None and flow.attributes["banata.code"] == "STORE_UNAVAILABLE"
    assert children(spans, flow) == ["banata.store guard"]
    store = next(s for s in spans if s.name == "banata.store guard")
    assert store.status.status_code is StatusCode.ERROR


def test_tracing_off_traces_nothing(stack: Stack) -> None:
    assert stack.auth.tracing is None and not stack.auth.gateway.observed
    assert stack.auth._ops() is stack.auth.store
