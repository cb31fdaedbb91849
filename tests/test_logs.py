"""Logs: one JSON object per line with ``--log-format json``, readable text by default,
and no secret (a password from clouds.yaml, a token) in any line at any level, whatever
logger wrote it (openstacksdk, keystoneauth and urllib3 debug output included)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from conftest import Lab
from nfs_exportd.logs import MASK, RedactFilter, redact, register_secret
from nfs_exportd_sim import SimCloud

PASSWORD = "Tr0ub4dor&3-very-secret"
OBSERVER_PASSWORD = "0bserver-Pa55-also-secret"
SCENARIO = {
    "regions": ["RegionOne"],
    "projects": [{"name": "admin"}, {"name": "tools"}],
    "users": [
        {"name": "admin", "password": PASSWORD, "roles": [{"role": "admin", "project": "admin"}]},
        {"name": "observer", "password": OBSERVER_PASSWORD,
         "roles": [{"role": "reader", "system": "all"}]},
    ],
    "servers": [
        {"id": "t1", "name": "tools-1", "project": "tools", "region": "RegionOne",
         "addresses": ["172.16.0.5"]},
    ],
}  # fmt: skip


@pytest.fixture
def cloud(lab: Lab) -> Iterator[SimCloud]:
    sim = SimCloud(SCENARIO)
    sim.start()
    try:
        sim.clouds_yaml(
            lab.root / "clouds.yaml",
            {
                "nfs": {"user": "admin", "password": PASSWORD, "project": "admin"},
                "observer": {
                    "user": "observer",
                    "password": OBSERVER_PASSWORD,
                    "system_scope": "all",
                },
            },
        )
        lab.config["inventory"] = {
            "source": "openstack",
            "cloud": "nfs",
            "identity_cloud": "observer",
            "timeout_seconds": 5,
        }
        lab.add_project("tools", 50380)
        yield sim
    finally:
        sim.stop()


def _cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    lab.write()
    pre = ["--allow-root"] if os.geteuid() == 0 else []
    return subprocess.run(
        [sys.executable, "-m", "nfs_exportd.cli", "--config", str(lab.config_path), *pre, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(lab.root / "clouds.yaml")},
    )


def _assert_clean(text: str, cloud: SimCloud) -> None:
    for secret in (PASSWORD, OBSERVER_PASSWORD):
        assert secret not in text
    tokens = list(cloud.state.tokens)
    assert tokens, "the sim issued no token: the test would prove nothing"
    for tok in tokens:
        assert tok not in text and tok[:40] not in text


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_password_or_token_in_any_log_line_at_debug(lab: Lab, cloud: SimCloud, fmt: str) -> None:
    outputs = []
    for args in (["plan"], ["sync"], ["explain", "172.16.0.5"], ["sync"]):
        proc = _cli(lab, "--log-format", fmt, "-v", *args)
        assert proc.returncode in (0, 3), proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
    # a failing login: the error path must not echo the credentials either
    cloud.add_fault(service="identity", method="POST", path_regex="auth/tokens", status=401)
    proc = _cli(lab, "--log-format", fmt, "-v", "sync")
    assert proc.returncode == 3
    outputs.append(proc.stdout + proc.stderr)
    everything = "\n".join(outputs)
    assert "keystoneauth" in everything or "openstack" in everything  # debug really on
    assert len(everything.splitlines()) > 50
    _assert_clean(everything, cloud)
    if fmt == "json":
        for out in outputs:
            proc_lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            assert proc_lines
            for ln in proc_lines:
                rec = json.loads(ln)
                assert {"time", "level", "logger", "message"} <= set(rec)


def test_decisions_are_logged_once_each_with_their_reason(lab: Lab, cloud: SimCloud) -> None:
    proc = _cli(lab, "sync")
    assert proc.returncode == 0, proc.stderr
    home = lab.srv("tools", "home")
    line = f"add tools {home} -> 172.16.0.5 (new-export)"
    assert proc.stderr.count(line) == 1
    cloud.delete_server("t1")
    proc = _cli(lab, "--log-format", "json", "sync")
    msgs = [json.loads(ln)["message"] for ln in proc.stderr.splitlines() if ln.startswith("{")]
    held = [m for m in msgs if m.startswith("held remove tools") and "pending-confirmation" in m]
    assert len(held) == 1, msgs


@pytest.mark.parametrize(
    "text",
    [
        '{"auth": {"identity": {"password": {"user": {"name": "u", "password": "hunter2xx"}}}}}',
        "{'password': 'hunter2xx', 'username': 'u'}",
        "curl -H 'X-Auth-Token: gAAAAAhunter2xx' http://x",
        "X-Subject-Token: gAAAAAhunter2xx",
        "https://x/?token=hunter2xx&x=1",
        "application_credential_secret=hunter2xx",
    ],
)
def test_credential_shapes_are_masked(text: str) -> None:
    out = redact(text)
    assert "hunter2xx" not in out
    assert MASK in out


def test_registered_secrets_are_masked_in_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register_secret("plain-Secret-value-42")
    rec = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "login as %s failed", ("plain-Secret-value-42",), None
    )
    try:
        raise RuntimeError("bad plain-Secret-value-42")
    except RuntimeError:
        rec.exc_info = sys.exc_info()
    RedactFilter().filter(rec)
    assert "plain-Secret-value-42" not in rec.getMessage()
    assert rec.exc_text and "plain-Secret-value-42" not in rec.exc_text
    assert redact("harmless text") == "harmless text"


def test_an_unexpected_error_is_logged_through_the_handler(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (planted: status raises) ends with exit 1 and one redacted log record with
    its traceback, never a raw traceback around the redaction filter."""
    from nfs_exportd import cli
    from nfs_exportd.commands import status as status_command

    register_secret("main-secret-value")

    def broken(args: object) -> int:
        raise RuntimeError("status broke holding main-secret-value")

    monkeypatch.setattr(status_command, "run", broken)
    lab.write()
    assert cli.main(["--config", str(lab.config_path), "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR unexpected RuntimeError: status broke holding ***; "), err
    assert "Traceback (most recent call last)" in err  # through the handler's formatter
    assert "main-secret-value" not in err
