"""docs/voice-session.md and the implementation agree: every close code the server uses and every
message type either side sends is in the doc's tables, and nothing documented is missing."""

from __future__ import annotations

import re
import typing

import pytest
from pydantic import BaseModel

from samvad import events, protocol
from samvad.settings import REPO_ROOT

pytestmark = pytest.mark.unit
DOC = (REPO_ROOT / "docs" / "voice-session.md").read_text(encoding="utf-8")
CLIENT = {protocol.SessionStart, protocol.SessionUpdate, protocol.TextInput, protocol.ResponseCancel, protocol.Ping}


def _section(title: str) -> str:
    return DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _types(model: type[BaseModel]) -> set[str]:
    return set(typing.get_args(model.model_fields["type"].annotation))


def _models(module) -> set[type[BaseModel]]:
    return {
        m
        for m in vars(module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and "type" in getattr(m, "model_fields", {})
    }


def _documented(section: str) -> set[str]:
    """The backticked message type at the start of each table row."""
    return set(re.findall(r"^\| `\{?\"?(?:type\"?: ?\"?)?([a-z_.]+)", _section(section), flags=re.M))


def test_every_server_event_is_documented_and_nothing_else():
    sent = set().union(*(_types(m) for m in (_models(events) | _models(protocol)) - CLIENT))
    assert _documented("Server → client") == sent


def test_every_client_message_is_documented_and_nothing_else():
    rows = set(re.findall(r'^\| `\{"type": "([a-z_.]+)"', _section("Client → server"), flags=re.M))
    accepted = set().union(*(_types(m) for m in CLIENT)) - {"session.start"}  # session.start: "Connecting"
    assert rows == accepted
    assert '"type": "session.start"' in _section("Connecting")


def test_every_close_code_is_documented_and_nothing_else():
    used = {v for k, v in vars(protocol).items() if k.startswith("CLOSE_")}
    table = {int(c) for c in re.findall(r"^\| (\d{4}) \|", _section("Errors and close codes"), flags=re.M)}
    assert table == used
