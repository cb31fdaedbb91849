"""The monitoring kit (issue 14 section 4): Prometheus alert rules that say what ``check``
says, with the same thresholds, tested by the real ``promtool test rules`` (Debian's
``prometheus`` package, installed by ``make system-deps``); the dashboard's holds panel
without routine holds, freeze not coloured as an error, thresholds equal to check's, and
runbook links that lead to a section that exists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd.config import Config
from nfs_exportd.ops import check

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "contrib" / "prometheus"
RULES = PROM / "nfs-exportd.rules.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "nfs-exportd.json"
RUNBOOK = ROOT / "docs" / "runbook.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is missing: run 'make system-deps' (Debian package prometheus)")
    return subprocess.run(
        [exe, *args], cwd=PROM, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    proc = promtool("check", "rules", RULES.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = promtool("test", "rules", "nfs-exportd.rules.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _rules() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in data["groups"] for r in g["rules"]}


def test_every_rule_has_severity_summary_description_and_a_runbook_section() -> None:
    anchors = _anchors()
    for name, rule in _rules().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        url = notes["runbook_url"]
        assert url.startswith("https://RUNBOOK/runbook.md#"), (name, url)
        assert url.split("#", 1)[1] in anchors, f"{name}: no section {url} in runbook.md"


def test_rule_thresholds_are_checks_defaults() -> None:
    defaults = Config.model_fields
    warn = defaults["check"].default_factory().warning_after_seconds  # type: ignore[misc]
    crit = defaults["check"].default_factory().critical_after_seconds  # type: ignore[misc]
    max_age = defaults["maintenance"].default_factory().max_age_seconds  # type: ignore[misc]
    rules = _rules()
    assert f"> {crit:g}" in rules["NfsExportdNoCompleteInventory"]["expr"]
    assert f"> {warn:g}" in rules["NfsExportdStale"]["expr"]
    assert rules["NfsExportdHeld"]["for"] == f"{warn / 60:g}m"
    assert f"> {max_age:g}" in rules["NfsExportdMaintenanceForgotten"]["expr"]
    # the quiet holds of check are the ones the held rule leaves out; the human ones
    # alert at once, as check's WARNING does
    held = rules["NfsExportdHeld"]["expr"]
    assert set(re.search(r'reason!~"([^"]+)"', held).group(1).split("|")) == set(  # type: ignore[union-attr]
        check.QUIET | check.HUMAN
    )
    review = rules["NfsExportdNeedsReview"]
    assert "for" not in review
    assert set(re.search(r'reason=~"([^"]+)"', review["expr"]).group(1).split("|")) == set(  # type: ignore[union-attr]
        check.HUMAN
    )
    # the stale rule cannot fire when the endpoint is gone: these can
    assert rules["NfsExportdDown"]["expr"].startswith("up{")
    assert rules["NfsExportdMetricsAbsent"]["expr"].startswith("absent(")


def _anchors() -> set[str]:
    out = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return out


def _panels() -> dict[str, dict[str, Any]]:
    data = json.loads(DASHBOARD.read_text())
    return {p["title"]: p for p in data["panels"]}


def test_dashboard_holds_panel_leaves_routine_holds_out() -> None:
    panel = _panels()["Holds needing attention (last cycle)"]
    expr = panel["targets"][0]["expr"]
    assert set(re.search(r'reason!~"([^"]+)"', expr).group(1).split("|")) == set(check.QUIET)  # type: ignore[union-attr]


def test_dashboard_freeze_is_not_coloured_as_an_error() -> None:
    timeline = _panels()["State"]
    maps = timeline["fieldConfig"]["defaults"]["mappings"][0]["options"]
    errors = {v["color"] for v in maps.values() if "error" in v["text"]}
    freeze = [v for v in maps.values() if "freeze" in v["text"]]
    assert len(freeze) == 1 and freeze[0]["color"] not in errors | {"red"}, maps
    assert not any("error" in v["text"] for v in freeze)


def test_dashboard_thresholds_are_checks_and_links_reach_the_runbook() -> None:
    panels = _panels()
    steps = {
        title: [s["value"] for s in panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        for title in ("Since last cycle", "Since last complete inventory", "Maintenance flag age")
    }
    assert steps == {
        "Since last cycle": [None, 900],
        "Since last complete inventory": [None, 900, 3600],
        "Maintenance flag age": [None, 86400],
    }
    anchors = _anchors()
    data = json.loads(DASHBOARD.read_text())
    links = [ln["url"] for ln in data["links"]]
    links += [ln["url"] for p in data["panels"] for ln in p.get("links", [])]
    assert len(links) >= 5
    for url in links:
        assert url.startswith("https://RUNBOOK/runbook.md"), url
        if "#" in url:
            assert url.split("#", 1)[1] in anchors, url


def test_maintenance_flag_timestamp_is_the_flags_mtime(lab: Any) -> None:
    """The gauge the forgotten-flag rule ages: the file's mtime, as check measures it."""
    import os

    from prometheus_client.parser import text_string_to_metric_families

    prom = lab.root / "nfs_exportd.prom"
    lab.config["metrics"] = {"textfile": str(prom)}
    lab.add_project("tools", 50380)

    def gauge() -> float:
        for fam in text_string_to_metric_families(prom.read_text()):
            if fam.name == "nfs_exportd_maintenance_flag_timestamp_seconds":
                return float(fam.samples[0].value)
        raise AssertionError("no nfs_exportd_maintenance_flag_timestamp_seconds")

    assert lab.cli("sync") == 0
    assert gauge() == 0
    flag = lab.root / "maintenance"
    flag.write_text("keystone upgrade T1\n")
    os.utime(flag, (1_700_000_000, 1_700_000_000))
    assert lab.cli("sync") == 0  # nothing to hold (no instances); the flag is read all the same
    assert gauge() == 1_700_000_000
