"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

A real HTTP server (``create_app`` under uvicorn, on 127.0.0.1) serves a store with a
simulated day, a unit waiting for approval and a unit that has not started. The test
checks that the page shows the store's units and the ledger's money, that Approve and
Cancel act on the store and the page follows, that live events reach the page, and
that nothing overflows at phone width (360 px). It saves full-page screenshots.

Set-up installs Chromium with ``apt-get`` when ``chromium`` is not on PATH (as root);
when that is impossible the test fails with the reason, it never skips. Playwright's own
browser downloads are never used (``executable_path`` points at the system Chromium).
Screenshots go to ``$CASS_ACTIONS_TEST_ARTIFACTS`` (read at import time, before the
suite's fixtures clear ``CASS_ACTIONS_*`` variables) or ``tests/.artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from support import make_sim_pack, run_cli

ARTIFACTS_ENV = "CASS_ACTIONS_TEST_ARTIFACTS"
ARTIFACTS = os.environ.get(ARTIFACTS_ENV)  # read now: the autouse isolated_env fixture removes CASS_ACTIONS_* vars
TOKEN = "test-token-0123456789"
ENV = {"CASS_ACTIONS_LOAD_PLUGINS": "sim"}


# ----------------------------------------------------------------------------------------- the browser


def _chromium() -> str:
    """The system Chromium's path; installed with apt-get when missing. Fails (never skips) when impossible."""
    found = shutil.which("chromium")
    if found:
        return found
    why = ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        why = "not running as root, so apt-get cannot install it"
    elif shutil.which("apt-get") is None:
        why = "apt-get is not available on this machine"
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "chromium"]
        try:
            done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600,
                               stdin=subprocess.DEVNULL)
                done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900,
                                      stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                why = f"`{' '.join(install)}` failed (exit {done.returncode}): {done.stderr.strip()[-800:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"`{' '.join(install)}` could not run: {exc}"
        found = shutil.which("chromium")
        if found:
            return found
        why = why or "apt-get reported success but no `chromium` is on PATH"
    pytest.fail(f"the dashboard browser test needs Debian's `chromium` package and could not get it: {why}. "
                "Install it (apt-get install chromium) and run the test again.", pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the dashboard browser test needs Playwright's Python package: pip install -e '.[test]' "
                    "(or pip install playwright); it drives the system Chromium, no browser download",
                    pytrace=False)
    executable = _chromium()
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True, args=[*args, "--disable-gpu"])
        try:
            yield launched
        finally:
            launched.close()


# ----------------------------------------------------------------------------------------- the daemon


def _usd(value: float) -> str:
    from cass_actions_core.cli.output import usd

    return usd(value)


def _cli(*args: str, site: Path, data: Path) -> Any:
    return run_cli(*args, "--data-dir", str(data), "--config", str(data.parent / "cass-actions.toml"), site=site, env=ENV)


def _json_cli(*args: str, site: Path, data: Path) -> Any:
    out = _cli(*args, "--json", site=site, data=data)
    assert out.returncode == 0, (args, out.stderr)
    return json.loads(out.stdout)


@pytest.fixture
def day(site: Path, tmp_path: Path) -> dict[str, Any]:
    """A store with today's day simulated, a unit awaiting approval and a queued unit that has not started."""
    make_sim_pack(site, module="dashpack", templates=("morning_thoughts", "build", "late_thoughts"))
    from cass_actions_core.config import load_config
    from cass_actions_core.phases import DayPhases

    # A zone where it is now about 15:00, three hours from any phase boundary: the set-up and the
    # test stay in one phase of one date whenever they run.
    config_file = tmp_path / "cass-actions.toml"
    config_file.write_text(f'timezone = "{_zone_at_three_pm()}"\n')
    config = load_config(config_file, env={})
    today = DayPhases(config.phases, config.timezone).instance_at(datetime.now(ZoneInfo(config.timezone))).day
    data = tmp_path / "data"
    simulated = _cli("simulate", "--start", today.isoformat(), site=site, data=data)
    assert simulated.returncode == 0, simulated.stderr
    parked = _cli("run-action", "sim.build", "--provider", "offline", site=site, data=data)
    assert parked.returncode == 1, parked.stderr  # exit 1: parked, not completed
    queued = _json_cli("trigger", "morning_thoughts", "--focus", "the garden", site=site, data=data)
    assert queued["status"] == "queued"
    pending = _json_cli("approvals", site=site, data=data)
    assert pending, "the set-up made no pending approval"
    assert queued["date"] == today.isoformat() and queued["phase"] == "afternoon", queued
    return {"site": site, "data": data, "config": config_file, "date": queued["date"], "queued": queued,
            "approval": pending[-1]}


def _zone_at_three_pm() -> str:
    """An ``Etc/GMT±N`` zone whose local time is now between 15:00 and 16:00 (POSIX signs: Etc/GMT-3 is UTC+3)."""
    offset = (15 - datetime.now(ZoneInfo("UTC")).hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def server(day: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The API and the dashboard on 127.0.0.1: ``create_app(runtime, token=...)`` under uvicorn in a thread.

    The runtime is built in that thread (its store is bound to the thread that made it) and is
    not started: no scheduler runs, so what the test changes stays as the controls left it.
    """
    import uvicorn

    monkeypatch.syspath_prepend(str(day["site"]))
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    sock = _free_socket()
    port = sock.getsockname()[1]
    held: dict[str, Any] = {}

    def serve() -> None:
        try:
            from cass_actions_core.config import load_config
            from cass_actions_core.http import create_app
            from cass_actions_core.runtime import Runtime

            runtime = Runtime(load_config(day["config"]), data_dir=day["data"], provider="offline")
            try:
                app = create_app(runtime, token=TOKEN)
                held["server"] = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                                               timeout_graceful_shutdown=2))
                held["server"].run(sockets=[sock])
            finally:
                runtime.close()
        except BaseException as exc:  # shown by the fixture, not lost in the thread
            held["error"] = exc

    thread = threading.Thread(target=serve, name="dashboard-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if "error" in held:
            raise held["error"]
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the dashboard server did not start on 127.0.0.1 within 30 s", pytrace=False)
        time.sleep(0.1)
    try:
        yield base
    finally:
        if "server" in held:
            held["server"].should_exit = True
        thread.join(timeout=15)
        sock.close()


def _api(base: str, path: str, method: str = "GET", body: Any = None) -> Any:
    request = urllib.request.Request(base + "/api/" + path, method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                                     data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def _store_units(day: dict[str, Any]) -> dict[str, str]:
    """Unit id → status as the store has it (read by a separate `cass-actions queue` process)."""
    units = _json_cli("queue", "--date", day["date"], site=day["site"], data=day["data"])
    return {u["id"]: u["status"] for u in units}


def _artifacts_dir(tmp_path: Path) -> Path:
    # Default: tests/.artifacts/ in the checkout (git-ignored), kept after the run for a person or CI to look at.
    folder = Path(ARTIFACTS) if ARTIFACTS else Path(__file__).resolve().parents[1] / ".artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ----------------------------------------------------------------------------------------- the test


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught JavaScript errors of the test's page."""
    return []


@pytest.fixture
def page(browser: Any, server: str, page_errors: list[str]) -> Iterator[Any]:
    """A fresh browser tab at desktop size; closed before the server stops (its event stream with it)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.on("pageerror", lambda exc: page_errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())  # Cancel asks "are you sure?"
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        context.close()


def test_dashboard_shows_the_day_and_its_controls_act_on_the_store(page: Any, page_errors: list[str], server: str,
                                                                   day: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    artifacts = _artifacts_dir(tmp_path)
    print(f"\ndashboard screenshots: {artifacts}")

    # Without a token the page asks for one; a wrong one is refused with a message.
    page.goto(f"{server}/")
    expect(page.get_by_test_id("token-panel")).to_be_visible()
    expect(page.get_by_test_id("dashboard")).to_be_hidden()
    page.get_by_label("Access token").fill("not-the-token")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_test_id("token-error")).to_contain_text("not accepted")
    expect(page.get_by_test_id("dashboard")).to_be_hidden()

    # The token comes in the page URL, is kept in sessionStorage and leaves the address bar.
    page.goto(f"{server}/?token={TOKEN}&date={day['date']}")
    page.wait_for_selector("body[data-loaded=true]", state="attached")
    assert "token=" not in page.url
    assert page.evaluate("sessionStorage.getItem('cass-actions-token')") == TOKEN
    expect(page.get_by_test_id("live-status")).to_have_text("Live")
    expect(page.get_by_test_id("day-date")).to_have_text(day["date"])

    # Units: exactly the store's units of the day, with their statuses (as text, not only a colour).
    store = _store_units(day)
    parked_id, queued_id = day["approval"]["unit_id"], day["queued"]["id"]
    assert store[parked_id] == "awaiting_approval" and store[queued_id] == "queued"
    rows = page.get_by_test_id("unit-row")
    expect(rows).to_have_count(len(store))
    shown = {row.get_attribute("data-unit-id"): row.get_attribute("data-status") for row in rows.all()}
    assert shown == store
    assert {"completed", "awaiting_approval", "queued"} <= set(shown.values())
    queued_row = page.locator(f"[data-testid=unit-row][data-unit-id='{queued_id}']")
    expect(queued_row.get_by_test_id("status-text")).to_have_text("Queued")
    expect(queued_row.get_by_test_id("unit-focus")).to_contain_text("the garden")
    for unit_id, status in store.items():  # a Cancel button exactly on the units not finished
        cancel = page.locator(f"[data-testid=unit-row][data-unit-id='{unit_id}'] [data-testid=unit-cancel]")
        expect(cancel).to_have_count(0 if status in TERMINAL else 1)
    plan = _api(server, f"plan?date={day['date']}")
    assert plan["intention"], plan
    expect(page.get_by_test_id("intention")).to_contain_text(plan["intention"])

    # Money: limit, reserved and spent per category, as /api/budget says.
    budget = _api(server, f"budget?date={day['date']}")
    bars = page.get_by_test_id("money-bar")
    assert sorted(b.get_attribute("data-category") for b in bars.all()) == sorted(budget["categories"])
    for category, money in budget["categories"].items():
        bar = page.locator(f"[data-testid=money-bar][data-category='{category}']")
        for field in ("limit", "spent", "reserved"):
            assert float(bar.get_attribute(f"data-{field}")) == pytest.approx(money[field]), (category, field)
            expect(bar.get_by_test_id(f"money-{field}")).to_have_text(_usd(money[field]))
    assert budget["categories"]["reflection"]["spent"] > 0  # the simulated day spent money

    # History: newest first, with costs and the artifacts' paths.
    history = _api(server, "history?limit=20")
    first = page.get_by_test_id("history-row").first
    expect(first).to_have_attribute("data-unit-id", history[0]["unit_id"])
    expect(first).to_contain_text(_usd(history[0]["cost_usd"]))
    paths = [a["path"] for h in history for a in h["artifacts"] if a.get("path")]
    assert paths, "the simulated day wrote no artifact"
    expect(page.get_by_test_id("artifact-path").first).to_have_text(paths[0])

    # Approve: the parked unit resumes (queued; completed if a scheduler ran), in the store and on the page.
    approval_row = page.locator(f"[data-testid=approval-row][data-approval-id='{day['approval']['id']}']")
    approval_row.get_by_test_id("approval-note").fill("fine by me")
    approval_row.get_by_role("button", name="Approve").click()
    expect(approval_row).to_have_count(0)
    resumed = page.locator(f"[data-testid=unit-row][data-unit-id='{parked_id}']")
    expect(resumed).to_have_attribute("data-status", _one_of("queued", "running", "completed"))
    assert _store_units(day)[parked_id] in ("queued", "running", "completed")
    answered = [a for a in _json_cli("approvals", "--all", site=day["site"], data=day["data"])
                if a["id"] == day["approval"]["id"]]
    assert [(a["status"], a["note"]) for a in answered] == [("approved", "fine by me")]
    expect(page.get_by_test_id("event").first).to_be_attached()  # the answer came back on the event stream

    # Cancel: the unit that has not started ends, in the store and on the page.
    queued_row.get_by_role("button", name="Cancel").click()
    expect(queued_row).to_have_attribute("data-status", "cancelled", timeout=15_000)
    expect(queued_row.get_by_test_id("unit-cancel")).to_have_count(0)
    assert _store_units(day)[queued_id] == "cancelled"

    # Live: a unit queued by another process (the CLI) appears without a reload or a click.
    loads = page.evaluate("document.body.getAttribute('data-refreshes')")
    triggered = _json_cli("trigger", "late_thoughts", "--focus", "from elsewhere", site=day["site"], data=day["data"])
    assert triggered["date"] == day["date"]
    live_row = page.locator(f"[data-testid=unit-row][data-unit-id='{triggered['id']}']")
    expect(live_row).to_have_attribute("data-status", "queued")
    expect(live_row.get_by_test_id("unit-focus")).to_contain_text("from elsewhere")
    expect(page.locator("[data-testid=event][data-event-type='work_unit.queued']").first).to_be_attached()
    assert page.evaluate("document.body.getAttribute('data-refreshes')") != loads

    # Pause and resume the whole daemon.
    toggle = page.get_by_test_id("daemon-toggle")
    state = page.get_by_test_id("daemon-state")
    status = _api(server, "status")
    assert "daemon_paused" in status and status["daemon_paused"] is None, \
        f"GET /api/status should say the daemon is not paused (daemon_paused: null); it says {status.get('daemon_paused', 'nothing')!r}"
    expect(toggle).to_have_text("Pause daemon")
    toggle.click()
    expect(state).to_have_attribute("data-paused", "true")
    expect(state).to_contain_text("Paused")
    expect(toggle).to_have_text("Resume daemon")
    assert _api(server, "status")["daemon_paused"]["by"]  # who paused it, and when
    page.screenshot(path=str(artifacts / "dashboard-paused-1280.png"), full_page=True)
    toggle.click()
    expect(state).to_have_attribute("data-paused", "false")
    expect(toggle).to_have_text("Pause daemon")
    assert _api(server, "status")["daemon_paused"] is None

    # Phone width: one column, nothing wider than the screen.
    page.set_viewport_size({"width": 360, "height": 780})
    page.wait_for_timeout(300)
    overflow = page.evaluate(OVERFLOW_JS)
    assert overflow["scroll"] <= overflow["width"] == 360, overflow
    assert not overflow["wide"], overflow
    timeline, side = page.get_by_test_id("timeline").bounding_box(), page.get_by_test_id("money").bounding_box()
    assert timeline and side and side["y"] >= timeline["y"] + timeline["height"] - 1  # stacked, not side by side
    page.screenshot(path=str(artifacts / "dashboard-360.png"), full_page=True)

    assert not page_errors, page_errors


TERMINAL = {"completed", "failed", "expired", "cancelled", "abandoned"}

#: Every visible element whose box leaves the viewport horizontally (the skip link parks off-screen on purpose).
OVERFLOW_JS = """() => {
    const width = document.documentElement.clientWidth;
    const wide = [];
    for (const node of document.querySelectorAll('body *')) {
        const box = node.getBoundingClientRect();
        if (!box.width || getComputedStyle(node).position === 'absolute') continue;
        if (box.right > width + 0.5 || box.left < -0.5) {
            const id = node.dataset.testid ? `[${node.dataset.testid}]` : '';
            wide.push(`${node.tagName.toLowerCase()}${id} ${Math.round(box.left)}..${Math.round(box.right)}`);
        }
    }
    return {scroll: document.documentElement.scrollWidth, width, wide: wide.slice(0, 10)};
}"""


def _one_of(*values: str) -> Any:
    import re

    return re.compile("^(" + "|".join(map(re.escape, values)) + ")$")
