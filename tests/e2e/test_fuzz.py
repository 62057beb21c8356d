"""Schemathesis against the running graph's OpenAPI spec: every REST route, generated valid and
invalid (negative) inputs; no 5xx, and every response matches the documented status codes, content types
and schemas. SAMVAD_FUZZ_EXAMPLES raises the examples per route for a longer job."""

from __future__ import annotations

import itertools
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from tests.e2e.helpers import make_key
from tests.graph import ADMIN_KEY, PORT

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("SAMVAD_FUZZ_EXAMPLES", "120"))  # per route and mode (valid, invalid)
MIN_CASES = int(os.environ.get("SAMVAD_FUZZ_MIN_CASES", "1000"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
ran: list[str] = []


@pytest.fixture(scope="module")
def fuzz_key(serve_app) -> str:
    return make_key(serve_app, "fuzz", requests_per_minute=1_000_000)


def test_every_route_survives_generated_input(fuzz_key):
    # Hypothesis driven directly (not schemathesis' pytest plugin, which needs pytest < 9).
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{PORT}/openapi.json", headers={"X-Admin-Key": ADMIN_KEY})
    failures = {}
    for result, mode in itertools.product(
        schema.get_all_operations(), (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ):
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
            print_blob=False,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            ran.append(case.operation.label)
            case.call_and_validate(headers={"X-API-Key": fuzz_key, "X-Admin-Key": ADMIN_KEY}, checks=CHECKS, timeout=60)

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # no input of this route can break its schema: nothing to send
        except Exception as exc:  # noqa: BLE001 - collect every route's failure, then report all
            failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"[:2000]
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


def test_enough_cases_ran():
    operations = set(ran)
    assert {
        "POST /api/v1/turn",
        "POST /api/v1/tts",
        "POST /api/v1/asr",
        "POST /api/v1/sessions",
        "GET /api/v1/sessions/{session_id}",
        "GET /api/v1/sessions/{session_id}/messages",
    } <= operations, operations
    print(f"fuzzing: {len(ran)} cases over {len(operations)} routes")
    assert len(ran) >= MIN_CASES
