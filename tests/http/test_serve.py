"""`cass-actions serve` in a subprocess: token sources, the loopback rule, no store created, the missing
extra, and that the core never imports the HTTP package on other paths."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cass_http_live import need
from support import run_cli

BUILTINS = {"CASS_ACTIONS_LOAD_PLUGINS": ""}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _simulated(tmp_path: Path) -> Path:
    data = tmp_path / "sim"
    out = run_cli("simulate", "--start", "2026-11-26", "--data-dir", str(data), env=BUILTINS)
    assert out.returncode == 0, out.stderr
    return data


def _serve(data: Path, *args: str, env: dict[str, str | None] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, **BUILTINS}
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.Popen([sys.executable, "-m", "cass_actions_core.cli.main", "serve", "--data-dir", str(data), *args],
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _wait_up(proc: subprocess.Popen[str], url: str) -> None:
    httpx = need("httpx")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            httpx.get(url + "/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not come up within 30 s")


def test_serve_with_a_token_from_the_environment_and_from_a_file(tmp_path: Path):
    httpx = need("httpx")
    data = _simulated(tmp_path)
    for how, args, env in (("env", [], {"CASS_ACTIONS_API_TOKEN": "from-env"}),
                           ("file", ["--token-file", str(tmp_path / "token")], {"CASS_ACTIONS_API_TOKEN": None})):
        (tmp_path / "token").write_text("from-file\n")
        token = "from-env" if how == "env" else "from-file"
        port = _port()
        proc = _serve(data, "--port", str(port), *args, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_up(proc, url)
            ok = httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and ok.json()["daemon_id"] == "cass"
            assert ok.json()["lease"] is None  # beside a daemon: serve never takes the lease
            units = httpx.get(f"{url}/api/units", params={"date": "2026-11-26"}, headers={"Authorization": f"Bearer {token}"})
            assert units.status_code == 200 and units.json()
            assert httpx.get(f"{url}/api/status").status_code == 401
            assert httpx.get(f"{url}/api/status", headers={"Authorization": "Bearer other"}).status_code == 401
        finally:
            proc.send_signal(signal.SIGINT if how == "env" else signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert f"required (from {'$CASS_ACTIONS_API_TOKEN' if how == 'env' else '--token-file'}" in err


def test_serve_refuses_a_non_loopback_address_without_a_token(tmp_path: Path):
    data = _simulated(tmp_path)
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        out = run_cli("serve", "--host", host, "--port", str(_port()), "--data-dir", str(data), env=BUILTINS)
        assert out.returncode == 1, out.stderr
        assert "refusing to listen on" in out.stderr and "CASS_ACTIONS_API_TOKEN" in out.stderr
        assert "Traceback" not in out.stderr
    empty = run_cli("serve", "--data-dir", str(data), env={**BUILTINS, "CASS_ACTIONS_API_TOKEN": " "})
    assert empty.returncode == 1 and "set but empty" in empty.stderr
    blank = tmp_path / "blank"
    blank.write_text("\n")
    assert "is empty" in run_cli("serve", "--data-dir", str(data), "--token-file", str(blank), env=BUILTINS).stderr
    # Naming a token variable that is not set asks for a token: no silent fall-back to no auth.
    unset = run_cli("serve", "--data-dir", str(data), "--token-env", "NO_SUCH_TOKEN_VAR",
                    env={**BUILTINS, "NO_SUCH_TOKEN_VAR": None})
    assert unset.returncode == 1 and "$NO_SUCH_TOKEN_VAR is not set" in unset.stderr


def test_serve_on_a_folder_without_a_store_creates_nothing(tmp_path: Path):
    missing = tmp_path / "nowhere"
    out = run_cli("serve", "--data-dir", str(missing), "--port", str(_port()), env=BUILTINS)
    assert out.returncode == 1 and "Nothing was created" in out.stderr, out.stderr
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run_cli("serve", "--data-dir", str(empty), "--port", str(_port()), env=BUILTINS)
    assert out.returncode == 1 and list(empty.iterdir()) == []


def test_without_the_extra_serve_and_the_package_say_how_to_install_it(tmp_path: Path):
    data = _simulated(tmp_path)
    block = "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None; "
    serve = subprocess.run([sys.executable, "-c", block + "from cass_actions_core.cli.main import main; "
                            f"main(['serve', '--data-dir', {str(data)!r}])"],
                           capture_output=True, text=True, env={**os.environ, **BUILTINS}, timeout=60)
    assert serve.returncode == 1, serve.stderr
    assert "pip install 'cass-actions[http]'" in serve.stderr and "Traceback" not in serve.stderr
    assert len(serve.stderr.strip().splitlines()) == 1  # one paragraph
    package = subprocess.run([sys.executable, "-c", block + "import cass_actions_core.http"], capture_output=True,
                             text=True, timeout=60)
    assert package.returncode == 1 and "HTTPExtraMissing" in package.stderr
    assert "pip install 'cass-actions[http]'" in package.stderr


def test_the_core_never_imports_the_http_stack_on_other_paths():
    code = ("import sys\nfrom cass_actions_core.cli.main import main\n"
            "try:\n    main(['list'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "import cass_actions_core.runtime\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette', 'httpx')"
            " or m.startswith('cass_actions_core.http'))\n"
            "print('LOADED', bad)\nassert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **BUILTINS},
                         timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "LOADED []" in out.stdout


def test_serve_on_a_port_in_use_says_so_in_one_paragraph_and_prints_no_banner(tmp_path: Path):
    need("fastapi")
    data = _simulated(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli("serve", "--port", str(port), "--data-dir", str(data), env=BUILTINS)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == (f"Error: could not listen on 127.0.0.1:{port}: the port is in use (is another server "
                                  "running?). Nothing was started.")
