"""The operator's commands with backend: ganesha (issue 12: "status, explain, check,
metrics, history and rollback work the same with this backend"): the CLI in-process,
static inventory, a real NFS-Ganesha 4.3 on its private bus; what Ganesha serves is read
with DisplayExport after every step, never inferred from our own files."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Lab
from lab_fixtures import ganesha_lo
from nfs_exportd_sim.lab.ganesha import GaneshaServer
from test_ganesha_adversarial import _ganesha_config
from test_ganesha_backend import _reset, _served

__all__ = ["ganesha_lo"]  # fixture, imported for pytest

A, B, C = "172.16.0.5", "172.16.0.6", "172.16.0.7"
Out = pytest.CaptureFixture[str]


def _run(lab: Lab, capsys: Out, *args: str, code: int = 0) -> str:
    capsys.readouterr()
    got = lab.cli(*args)
    out = capsys.readouterr().out
    assert got == code, f"{' '.join(args)}: exit {got}, expected {code}; stdout: {out}"
    return out


def _json(lab: Lab, capsys: Out, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_run(lab, capsys, *args))
    return data


def test_status_explain_check_metrics_history_and_rollback_with_ganesha(
    lab: Lab, ganesha_lo: GaneshaServer, capsys: Out
) -> None:
    _ganesha_config(lab.config, ganesha_lo)
    metrics = lab.root / "metrics.prom"
    lab.config["metrics"] = {"textfile": str(metrics)}
    lab.config["safety"]["removal_confirmations"] = 2
    lab.add_project("tools", 50380)
    for n, ip in enumerate((A, B, C), start=1):
        lab.add_instance(f"i-{n}", "tools", ip)
    home = lab.srv("tools", "home")
    try:
        assert lab.cli("sync") == 0
        full = {(home, A), (home, B), (home, C)}
        assert _served(ganesha_lo) == full

        lab.remove_instance("i-2")
        lab.remove_instance("i-3")
        assert lab.cli("sync") == 3  # 1 of 2 confirmations: nothing removed yet
        assert _served(ganesha_lo) == full
        # explain and status see the pending removal, from conf_dir
        why = _run(lab, capsys, "explain", "--project", "tools")
        assert f"clients: {A} {B} {C}" in why  # what is in force: conf_dir, live
        assert f"next cycle: remove {home} {B} (instance-gone)" in why
        st = _json(lab, capsys, "status", "--json")
        assert st["last_cycle"]["result"] == "held"
        assert "pending-confirmation" in st["holds_by_reason"]

        assert lab.cli("sync") == 0  # confirmed: B and C go
        assert _served(ganesha_lo) == {(home, A)}
        st = _json(lab, capsys, "status", "--json")
        assert st["last_cycle"]["result"] == "ok" and "ganesha:" in st["last_cycle"]["message"]
        check = _run(lab, capsys, "check")
        assert check.startswith("NFS-EXPORTD OK - in sync: 1 projects, 1 pairs"), check
        families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
        pairs = families["nfs_exportd_pairs"].samples
        assert sum(s.value for s in pairs) == 1, pairs
        history = _json(lab, capsys, "history", "--json")["entries"]
        assert [e["kind"] for e in history[-2:]] == ["sync", "sync"]
        assert {tuple(r[:3]) for r in history[-1]["removed"]} == {
            ("tools", home, B),
            ("tools", home, C),
        }

        # rollback over DBus: B and C are served again, held until release
        out = _run(lab, capsys, "rollback")
        assert f"rolled back to journal entry {history[-2]['id']}" in out
        assert _served(ganesha_lo) == full
        rb = _json(lab, capsys, "history", "--json")["entries"][-1]
        assert rb["kind"] == "rollback"
        assert {tuple(r[:3]) for r in rb["added"]} == {("tools", home, B), ("tools", home, C)}
        for _ in range(2):
            assert lab.cli("sync") == 3  # rollback-hold: nothing removed again
            assert _served(ganesha_lo) == full
        assert "rollback-hold" in _json(lab, capsys, "status", "--json")["holds_by_reason"]
        assert "released" in _run(lab, capsys, "release")
        assert lab.cli("sync") == 3  # normal rules: B and C pending again
        assert lab.cli("sync") == 0
        assert _served(ganesha_lo) == {(home, A)}
    finally:
        _reset(ganesha_lo)
