"""The light import paths (core, LLM base, offline, meter, registry, CLI ``list``) never load the SDK.

Each check runs in a fresh interpreter, because this test process has already
imported ``anthropic`` for the provider tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIGHT_MODULES = [
    "cass_actions_core",
    "cass_actions_core.llm",
    "cass_actions_core.llm.base",
    "cass_actions_core.llm.errors",
    "cass_actions_core.llm.prices",
    "cass_actions_core.llm.offline",
    "cass_actions_core.llm.metered",
    "cass_actions_core.llm.registry",
    "cass_actions_core.llm.scripted",
    "cass_actions_core.llm.anthropic_provider",  # the SDK loads on the first call only
    "cass_actions_core.builtin.plugin",
    "cass_actions_core.testing.fake_anthropic",
]


def python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CASS_ACTIONS_"))}
    env["CASS_ACTIONS_DATA_DIR"] = str(tmp_path)  # no user config or data
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_does_not_import_anthropic(module: str, tmp_path: Path) -> None:
    result = python(f"import {module}, sys; print('anthropic' in sys.modules)", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_registering_and_building_providers_does_not_import_anthropic(tmp_path: Path) -> None:
    result = python(
        """
        import sys
        from cass_actions_core.config import LLMSettings
        from cass_actions_core.llm.registry import builtin_registry, resolve_settings
        registry = builtin_registry()
        provider = registry.provider_for(resolve_settings(LLMSettings(), None))
        print(type(provider).__name__, 'anthropic' in sys.modules)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["AnthropicProvider", "False"]


def test_cli_list_does_not_import_anthropic(tmp_path: Path) -> None:
    result = python(
        """
        import sys
        from cass_actions_core.cli.main import main
        try:
            main(["list"])
        except SystemExit as exc:
            code = exc.code
        print("RESULT", code, "anthropic" in sys.modules)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "RESULT 0 False"


def test_an_offline_run_in_a_fresh_process_opens_no_socket_and_no_sdk(tmp_path: Path) -> None:
    result = python(
        """
        import asyncio, sys
        events = []
        sys.addaudithook(lambda event, args: events.append(event) if event in (
            "socket.connect", "socket.getaddrinfo", "socket.bind", "socket.gethostbyname") else None)
        from cass_actions_core.config import LLMSettings
        from cass_actions_core.llm.registry import builtin_registry, resolve_settings
        settings = resolve_settings(LLMSettings(provider="offline"), None)
        provider = builtin_registry().provider_for(settings)
        from cass_actions_core.llm.metered import MeteredLLM
        meter = MeteredLLM(provider, settings, action_id="a.b", max_cost_usd=1, max_calls=2)
        text = asyncio.run(meter.complete("Hello there. Second sentence.")).text
        print(text.startswith("[offline]"), events, "anthropic" in sys.modules)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True [] False"
