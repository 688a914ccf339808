"""Shared fixtures for the LLM layer tests.

No pytest-asyncio here: coroutines run with :func:`asyncio.run` through the ``run``
fixture. Nothing touches the network except 127.0.0.1 (the fake Messages API).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from cass_actions_core.config import LLMSettings
from cass_actions_core.llm.anthropic_provider import AnthropicProvider
from cass_actions_core.testing.fake_anthropic import FakeAnthropic

R = TypeVar("R")

_ANTHROPIC_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CONFIG_DIR",
    "ANTHROPIC_CUSTOM_HEADERS",
)


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a developer's real key or endpoint leak into a test."""
    for name in _ANTHROPIC_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run() -> Callable[[Awaitable[R]], R]:
    """Run a coroutine to completion in a fresh event loop."""

    def runner(awaitable: Awaitable[R]) -> R:
        async def main() -> R:
            return await awaitable

        return asyncio.run(main())

    return runner


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """A started fake Messages API on 127.0.0.1."""
    with FakeAnthropic() as server:
        yield server


class SDKHarness:
    """An :class:`AnthropicProvider` pointed at the fake, and a runner that closes its client."""

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake

    def provider(self, **settings: Any) -> AnthropicProvider:
        """A provider with ``base_url`` = the fake, ``api_key="test-key"``, fast retries/timeouts."""
        values: dict[str, Any] = {"base_url": self.fake.url, "max_retries": 0, "timeout_seconds": 5.0}
        values.update(settings)
        return AnthropicProvider(LLMSettings(**values), api_key="test-key")

    def run(self, provider: AnthropicProvider, call: Callable[[], Awaitable[R]]) -> R:
        """Run ``call()`` and close the provider's SDK client in the same event loop."""

        async def main() -> R:
            try:
                return await call()
            finally:
                await provider.aclose()

        return asyncio.run(main())


@pytest.fixture
def sdk(fake: FakeAnthropic) -> SDKHarness:
    """Build real-SDK providers against the fake server."""
    return SDKHarness(fake)
