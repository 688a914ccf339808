"""The offline provider: deterministic, labelled, priced, and never touching the network."""

from __future__ import annotations

import math
import socket
import sys
from datetime import date
from enum import Enum
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.base import EffectiveLLMSettings, LLMRequest, Usage
from cass_actions_core.llm.errors import LLMError
from cass_actions_core.llm.metered import MeteredLLM
from cass_actions_core.llm.offline import OfflineProvider, build_from_schema
from cass_actions_core.llm.registry import builtin_registry

SYSTEM = "You are Cass, a reflective agent. Write in the first person."
USER = (
    "Summarise my morning. It was busy.\n"
    "# Garden\n"
    "- watered the tomatoes\n"
    "- mood: calm\n"
    "Nothing else happened."
)


def request(user: str = USER, **kwargs: Any) -> LLMRequest:
    values: dict[str, Any] = {"model": "claude-haiku-5-5", "messages": [{"role": "user", "content": user}],
                              "max_tokens": 512, "system": SYSTEM}
    values.update(kwargs)
    return LLMRequest(**values)


# Audit hooks cannot be removed, so one hook is installed once and switched on per test.
# Creating a socket object is allowed (asyncio's event loop makes a self-pipe with
# socketpair()); connecting, binding or resolving a name is what "network" means.
_BLOCK_SOCKETS = False
_SOCKET_EVENTS: list[str] = []
_NETWORK_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.bind", "socket.sendto"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _BLOCK_SOCKETS and event in _NETWORK_EVENTS:
        _SOCKET_EVENTS.append(event)
        raise RuntimeError(f"offline code opened a socket: {event}")


sys.addaudithook(_audit)


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any socket creation or connection for the duration of the test."""
    global _BLOCK_SOCKETS

    def refuse(*args: Any, **kwargs: Any) -> Any:
        _SOCKET_EVENTS.append("create_connection")
        raise RuntimeError("offline code called socket.create_connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    _SOCKET_EVENTS.clear()
    _BLOCK_SOCKETS = True
    try:
        yield _SOCKET_EVENTS
    finally:
        _BLOCK_SOCKETS = False


def test_the_socket_guard_really_fires(no_sockets: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError):
        sock.connect(("127.0.0.1", 9))
    with pytest.raises(RuntimeError):
        socket.create_connection(("127.0.0.1", 9))
    assert no_sockets == ["socket.connect", "create_connection"]
    no_sockets.clear()


def test_same_input_gives_the_same_labelled_output(run: Any, no_sockets: list[str]) -> None:
    provider = OfflineProvider()

    first = run(provider.complete(request()))
    second = run(OfflineProvider().complete(request()))

    assert first == second
    assert first.text.startswith("[offline]")
    assert "Re: Summarise my morning." in first.text
    assert "Context: You are Cass, a reflective agent." in first.text
    assert "Key points: Garden; watered the tomatoes; mood: calm." in first.text
    assert first.provider == "offline"
    assert first.stop_reason == "end_turn"
    assert no_sockets == []


def test_different_input_gives_different_output(run: Any) -> None:
    provider = OfflineProvider()
    a = run(provider.complete(request("Plan the afternoon.")))
    b = run(provider.complete(request("Plan the evening.")))
    assert a.text != b.text


def test_usage_is_estimated_from_characters_and_priced_at_the_configured_model(run: Any) -> None:
    provider = OfflineProvider(LLMSettings(provider="offline"))
    req = request(model="claude-sonnet-5-5")

    response = run(provider.complete(req))

    prompt = SYSTEM + "\n\n" + USER
    assert response.usage == Usage(input_tokens=math.ceil(len(prompt) / 4),
                                   output_tokens=math.ceil(len(response.text) / 4))
    # Sonnet 5.5: $2 input, $10 output per MTok.
    expected = (response.usage.input_tokens * 2.00 + response.usage.output_tokens * 10.00) / 1_000_000
    assert response.cost_usd == pytest.approx(expected, abs=1e-12)
    assert response.cost_usd > 0
    assert response.model == "claude-sonnet-5-5"


def test_output_respects_max_tokens(run: Any) -> None:
    response = run(OfflineProvider().complete(request(max_tokens=5)))
    assert len(response.text) <= 20
    assert response.text.startswith("[offline]")
    assert response.usage.output_tokens <= 5


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Step(BaseModel):
    action: str
    minutes: int = Field(ge=5, le=60)


class Plan(BaseModel):
    """A model exercising the schema features the generic builder must handle."""

    title: str
    summary: str = Field(max_length=6)
    detail: str = Field(min_length=40)
    phase: Literal["morning", "evening"]
    colour: Colour
    steps: list[Step] = Field(min_length=2)
    tags: list[str]
    score: float = Field(gt=0, le=1)
    priority: int
    urgent: bool
    note: str | None = None
    on: date
    extra: dict[str, int] = {}


def test_structured_output_is_built_from_the_schema(run: Any, no_sockets: list[str]) -> None:
    provider = OfflineProvider()

    result = run(provider.structured(request(), Plan))
    again = run(provider.structured(request(), Plan))

    plan = result.value
    assert plan == again.value
    assert plan.title == "[offline] Summarise my morning."
    assert len(plan.summary) <= 6
    assert len(plan.detail) >= 40 and plan.detail.startswith("[offline]")
    assert plan.phase == "morning"
    assert plan.colour is Colour.RED
    assert len(plan.steps) == 2 and all(s.minutes == 5 for s in plan.steps)
    assert len(plan.tags) == 1 and plan.tags[0].startswith("[offline]")
    assert 0 < plan.score <= 1
    assert plan.priority == 0
    assert plan.urgent is False
    assert plan.note is not None and plan.note.startswith("[offline]")
    assert result.response.text == plan.model_dump_json()
    assert result.response.provider == "offline"
    assert no_sockets == []


def test_structured_output_uses_the_callers_builder(run: Any) -> None:
    built = Step(action="water the garden", minutes=10)

    result = run(OfflineProvider().structured(request(), Step, offline=lambda: built))
    from_dict = run(OfflineProvider().structured(request(), Step, offline=lambda: {"action": "rest", "minutes": 5}))

    assert result.value is built
    assert from_dict.value == Step(action="rest", minutes=5)


def test_unbuildable_schema_asks_for_a_builder(run: Any) -> None:
    class Code(BaseModel):
        code: str = Field(pattern=r"^[A-Z]{3}-\d{4}$")

    with pytest.raises(LLMError) as caught:
        build_from_schema(Code, "anything")
    assert caught.value.kind == "invalid_output"
    assert "offline= builder" in caught.value.message


def test_recursive_models_terminate() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node] = []
        parent: Node | None = None

    node = build_from_schema(Node, "root. child.")
    assert node.name == "[offline] root."
    depth, current = 0, node
    while current.children:
        depth, current = depth + 1, current.children[0]
    assert depth < 30


def test_the_whole_metered_path_runs_offline_without_sockets(run: Any, no_sockets: list[str]) -> None:
    from cass_actions_core.config import LLMSettings as Settings
    from cass_actions_core.llm.registry import resolve_settings

    settings = resolve_settings(Settings(provider="offline", model="claude-haiku-5-5"), None)
    provider = builtin_registry().provider_for(settings)
    meter = MeteredLLM(provider, settings, action_id="journal.daily", max_cost_usd=1.0, max_calls=3)

    text = run(meter.complete("Write a short entry. Mention the bees."))
    step = run(meter.structured("Plan one step.", Step))

    assert text.text.startswith("[offline]")
    assert step.minutes == 5
    assert meter.calls == 2 and meter.spent_usd > 0
    assert no_sockets == []


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=400), max_tokens=st.integers(3, 300))
def test_offline_is_deterministic_and_labelled_for_any_text(text: str, max_tokens: int) -> None:
    import asyncio

    req = LLMRequest(model="claude-haiku-5-5", messages=[{"role": "user", "content": text}], max_tokens=max_tokens)
    a = asyncio.run(OfflineProvider().complete(req))
    b = asyncio.run(OfflineProvider().complete(req))
    assert a == b
    assert a.text.startswith("[offline]")
    assert a.usage.output_tokens <= max_tokens


def test_effective_settings_round_trip() -> None:
    settings = EffectiveLLMSettings.from_llm_settings(LLMSettings(provider="offline"))
    assert settings.provider_settings().provider == "offline"
