"""``diagnose`` without the lab: the refusal parsers on the servers' exact lines
(``tests/fixtures/refusals/``), reading a log once from the window's start, the journal,
the pure grouping into causes, the Icinga line, the log-level advice, the config keys
and the metrics.  The lab tests (tests/test_diagnose_lab.py) run it against the real
servers."""

from __future__ import annotations

import calendar
import importlib.util
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nfs_exportd.config import DiagnoseSource, load_config
from nfs_exportd.decide import Action, Change, Hold, Plan, Reason
from nfs_exportd.decide import diagnose as dx
from nfs_exportd.errors import ConfigError
from nfs_exportd.model import (
    ExportLine,
    ExportsFile,
    FileKind,
    InstanceRecord,
    InventorySnapshot,
    ProjectRecord,
    ServedExport,
)
from nfs_exportd.read import refusals as rf

FIX = Path(__file__).parent / "fixtures" / "refusals"
KNFS_A = "/tmp/nfs-lab/knfs/data/proj-a"


def local(y: int, mo: int, d: int, h: int, mi: int, s: int) -> float:
    return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))


NOW = local(2026, 12, 6, 6, 0, 0)  # an hour after the fixtures' lines


def parsed(name: str, since: float = 0.0) -> rf.FileRead:
    return rf.read_file(FIX / name, since, NOW)


def brief(r: dx.Refusal) -> tuple[str, str, str, str]:
    return (r.server, r.address, r.path, r.kind)


# -- the lines -------------------------------------------------------------------------


def test_ganesha_refusals_in_all_three_forms_and_both_tags() -> None:
    got = parsed("ganesha.log")
    assert [brief(r) for r in got.refusals] == [
        ("ganesha", "198.51.100.129", "/proj-a/vol1", "v4"),
        ("ganesha", "198.51.100.129", "/tmp/nfs-lab/data/proj-b/vol1", "v3-mount"),
        ("ganesha", "198.51.100.129", "/tmp/nfs-lab/data/proj-b/vol1", "v3-op"),
        ("ganesha", "198.51.100.129", "/tmp/nfs-lab/data/proj-b/vol1", "v3-op"),
        ("ganesha", "198.51.100.21", "/tmp/nfs-lab/data/proj-a/vol1", "v3-mount"),
        ("ganesha", "198.51.100.21", "/proj-a/vol1", "v4"),
    ]
    assert [r.export_id for r in got.refusals] == [101, None, 201, 201, None, 101]
    # DD/MM/YYYY in local time: the 6th of December, not the 12th of June
    assert got.refusals[0].time == local(2026, 12, 6, 5, 10, 40)
    assert (got.report.lines, got.report.refusals, got.report.undated) == (8, 6, 0)


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("mountd.syslog", local(2026, 12, 6, 5, 10, 37)),
        ("journal.short", local(2026, 12, 6, 5, 6, 45)),
        ("journal.short-iso", calendar.timegm((2026, 12, 6, 5, 6, 45))),
    ],
)
def test_rpc_mountd_refusals_from_syslog_and_journal_text(name: str, first: float) -> None:
    got = parsed(name)
    assert [(r.address, r.path, r.kind) for r in got.refusals] == [
        ("198.51.100.21", KNFS_A, "not exported"),
        ("198.51.100." + ("241" if name == "mountd.syslog" else "242"), KNFS_A, "unmatched host"),
    ]
    assert got.refusals[0].time == first and got.report.undated == 0


def test_rpc_mountd_stderr_lines_carry_no_time_and_count_whatever_the_window() -> None:
    got = parsed("mountd.stderr", since=NOW - 60)
    assert [(r.address, r.time) for r in got.refusals] == [
        ("198.51.100.21", None),
        ("198.51.100.241", None),
    ]
    assert got.report.undated == 2


def test_the_window_starts_where_it_says() -> None:
    got = parsed("ganesha.log", since=local(2026, 12, 6, 5, 10, 43))
    assert [r.time for r in got.refusals] == [local(2026, 12, 6, 5, 10, s) for s in (43, 44, 45)]


def test_journal_json_records_by_message_and_realtime_stamp() -> None:
    with (FIX / "journal.json").open("rb") as f:
        found, lines = rf.parse_journal(iter(f), 0.0)
    assert lines == 4
    assert [(r.address, r.path, r.kind) for r in found] == [
        ("198.51.100.21", KNFS_A, "not exported"),
        ("198.51.100.242", KNFS_A, "unmatched host"),
        ("198.51.100.99", "/srv/caf\ufffd", "not exported"),  # a byte-array MESSAGE
    ]
    assert found[0].time == calendar.timegm((2026, 12, 6, 5, 6, 45)) + 0.123456
    with (FIX / "journal.json").open("rb") as f:
        late, _ = rf.parse_journal(iter(f), calendar.timegm((2026, 12, 6, 5, 6, 46)))
    assert [r.address for r in late] == ["198.51.100.242", "198.51.100.99"]


def test_the_real_journalctl_accepts_the_command_line(tmp_path: Path) -> None:
    """journalctl over an empty journal directory: the arguments diagnose gives it are
    valid, and an empty answer is no refusal (not an error)."""
    for src in (
        DiagnoseSource(kind="journal", identifier="rpc.mountd", directory=tmp_path),
        DiagnoseSource(kind="journal", unit="nfs-ganesha.service", directory=tmp_path),
    ):
        got = rf.read_journal(src, time.time() - 900, 30)
        assert got.report.error is None and got.refusals == [], got.report
    bad = DiagnoseSource(kind="journal", identifier="x", directory=tmp_path / "missing")
    assert rf.read_journal(bad, 0, 30).report.error is not None


def test_a_journalctl_that_warns_a_lot_is_still_read(tmp_path: Path) -> None:
    """Its stderr is drained while its stdout is parsed: 300 kB of warnings (more than a
    pipe holds) first, then the records."""
    fake = tmp_path / "journalctl"
    fake.write_text(
        f"#!/bin/sh\nhead -c 300000 /dev/zero | tr '\\0' w >&2\ncat {FIX / 'journal.json'}\n"
    )
    fake.chmod(0o755)
    src = DiagnoseSource(kind="journal", identifier="rpc.mountd")
    got = rf.read_journal(src, 0, 10, command=str(fake))
    assert got.report.error is None, got.report.error
    assert len(got.refusals) == 3


def test_a_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    got = rf.read_file(tmp_path / "nope.log", 0, NOW)
    assert got.report.error and "nope.log" in got.report.error and got.refusals == []


def test_a_big_log_is_read_from_the_windows_start_only(tmp_path: Path) -> None:
    """Half a million lines over a day: the last 15 minutes cost a few thousand lines."""
    start = NOW - 86400
    log = tmp_path / "ganesha.log"
    n = 500_000
    with log.open("w") as f:
        for i in range(n):
            stamp = time.strftime("%d/%m/%Y %H:%M:%S", time.localtime(start + i * 86400 / n))
            f.write(
                f"{stamp} : epoch 1 : h : nfs-ganesha-1[svc_1] mnt_Mnt :NFS3 :INFO :MOUNT: "
                "Export entry /srv/p/home does not allow access for client "
                f"::ffff:10.0.0.{i % 250}\n"
            )
    got = rf.read_file(log, NOW - 900, NOW)
    want = sum(1 for i in range(n) if start + i * 86400 / n >= NOW - 900)
    assert abs(len(got.refusals) - want) <= 6  # the second at the edge
    assert got.report.lines < 12_000, got.report.lines  # not 500,000
    assert rf.read_file(log, 0, NOW).report.lines == n


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("::ffff:198.51.100.129", "198.51.100.129"),
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8::0001", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("not-an-ip", None),
    ],
)
def test_addresses_are_canonical(text: str, want: str | None) -> None:
    assert rf.canonical(text) == want


# -- the causes (pure) ------------------------------------------------------------------

A, B, C = "proja", "projb", "projc"
VOL = {p: f"/srv/{p}/home" for p in (A, B, C)}
INST = {A: ["10.0.0.1", "10.0.0.2"], B: ["10.0.1.1"], C: ["10.0.2.1"]}


def snapshot(**over: Any) -> InventorySnapshot:
    insts = {
        p: tuple(
            InstanceRecord(f"i-{a}", f"{p}-{i}", p, "ACTIVE", (ipaddress.ip_address(a),))
            for i, a in enumerate(addrs)
        )
        for p, addrs in INST.items()
    }
    kw: dict[str, Any] = {
        "source": "test",
        "projects": {p: ProjectRecord(f"id-{p}", p, True) for p in INST},
        "instances": insts,
    }
    kw.update(over)
    return InventorySnapshot(**kw)


def in_force(clients: dict[str, list[str]] | None = None) -> dict[str, ExportsFile]:
    clients = clients if clients is not None else INST
    return {
        f"{p}.exports": ExportsFile(
            f"{p}.exports", FileKind.PROJECT, p, (ExportLine(VOL[p], "rw", tuple(cs)),)
        )
        for p, cs in clients.items()
    }


def inputs(refusals: list[dx.Refusal], **over: Any) -> dx.Inputs:
    kw: dict[str, Any] = {
        "refusals": refusals,
        "snapshot": snapshot(),
        "in_force": in_force(),
        "served": {p: (ServedExport(p, "home", VOL[p], "rw"),) for p in INST},
        "public": (),
        "plan": Plan((), (), {}, {}, True, 0),
        "since": 1000.0,
        "until": 2000.0,
    }
    kw.update(over)
    return dx.Inputs(**kw)


def ref(address: str, path: str, t: float = 1500.0) -> dx.Refusal:
    return dx.Refusal(t, "rpc.mountd", address, path, "unmatched host")


def only(rep: dict[str, Any]) -> dict[str, Any]:
    assert len(rep["causes"]) == 1, rep["causes"]
    c: dict[str, Any] = rep["causes"][0]
    return c


def test_wrong_source_needs_several_projects_and_names_the_silent_instances() -> None:
    rs = [ref("192.0.2.1", VOL[p], 1500 + i) for i, p in enumerate((A, B, C, A))]
    rep = dx.diagnose(inputs(rs))
    c = only(rep)
    assert (c["cause"], c["severity"], c["refusals"]) == ("wrong-source-address", "CRITICAL", 4)
    assert c["projects"] == [A, B, C] and (c["first"], c["last"]) == (1500, 1503)
    assert "4 of the 4 instance addresses" in c["notes"][0]
    assert rep["verdict"] == {"code": 2, "state": "CRITICAL"}
    line = dx.check_line(rep)
    assert line.startswith("NFS-EXPORTD-DIAGNOSE CRITICAL - wrong source address 192.0.2.1 ")
    # one project only: an unknown address, a warning
    rep = dx.diagnose(inputs([ref("192.0.2.1", VOL[A])] * 5))
    assert only(rep)["cause"] == "unknown-address" and rep["verdict"]["code"] == 1


def test_wrong_source_is_still_named_when_the_inventory_is_unknown() -> None:
    rs = [ref("192.0.2.1", VOL[A]), ref("192.0.2.1", VOL[B])]
    rep = dx.diagnose(inputs(rs, snapshot=InventorySnapshot.unknown("test", "401")))
    assert only(rep)["cause"] == "wrong-source-address"
    assert any("inventory is unknown (401)" in w for w in rep["warnings"])
    assert rep["inventory"]["complete"] is False


def test_another_projects_instance_is_explained() -> None:
    rep = dx.diagnose(inputs([ref("10.0.1.1", VOL[A] + "/sub")]))
    c = only(rep)
    assert (c["cause"], c["projects"], c["address_owners"]) == ("other-project", [A], [B])
    assert rep["verdict"]["code"] == 0
    assert "no unexplained refusals (1 explained)" in dx.check_line(rep)


def test_too_new_held_pending_removal() -> None:
    new, held, gone = "10.0.0.7", "10.0.0.8", "10.0.0.9"
    INST_PLUS = {**INST, A: [*INST[A], new, held]}
    plan = Plan(
        changes=(Change(A, VOL[A], new, Action.ADD, Reason.NEW_INSTANCE),),
        holds=(
            Hold(Reason.TOO_MUCH_CHANGE, A, VOL[A], held, "too much", Action.ADD),
            Hold(Reason.PENDING_CONFIRMATION, B, VOL[B], gone, "1 of 3", Action.REMOVE),
        ),
        files={},
        counters={},
        counting=True,
        in_force_pairs=4,
    )
    key = f"too-much-change|{A}|{VOL[A]}|{held}"
    rep = dx.diagnose(
        inputs(
            [ref(new, VOL[A]), ref(held, VOL[A]), ref(gone, VOL[A])],
            plan=plan,
            hold_since={key: 1_700_000_000.0},
            snapshot=snapshot(
                instances={
                    p: tuple(
                        InstanceRecord(f"i-{a}", a, p, "ACTIVE", (ipaddress.ip_address(a),))
                        for a in addrs
                    )
                    for p, addrs in INST_PLUS.items()
                }
            ),
        )
    )
    got = {c["cause"]: c for c in rep["causes"]}
    assert set(got) == {"not-yet-exported", "addition-held", "pending-removal"}
    assert "held (too-much-change) since 2023-11-14T22:13:20Z" in got["addition-held"]["notes"][0]
    assert (
        "projb /srv/projb/home (pending-confirmation: 1 of 3)"
        in (got["pending-removal"]["notes"][0])
    )
    assert rep["verdict"]["code"] == 0  # all explained: nothing pages


def test_a_path_not_served_and_a_pair_refused_while_exported() -> None:
    rep = dx.diagnose(inputs([ref("10.0.0.1", "/srv/other/x"), ref("10.0.0.1", VOL[A])]))
    got = [c["cause"] for c in rep["causes"]]
    assert got == ["path-not-served", "refused-while-exported"]
    assert rep["verdict"]["code"] == 1


def test_a_refusal_inside_a_network_in_force_is_refused_while_exported() -> None:
    """A line in force for a network (as a public export writes) covers its addresses."""
    rep = dx.diagnose(
        inputs([ref("10.0.0.2", VOL[A])], in_force=in_force({A: ["10.0.0.0/24"], B: INST[B]}))
    )
    assert only(rep)["cause"] == "refused-while-exported"


def test_an_instance_of_an_unreadable_project_is_not_exported() -> None:
    rep = dx.diagnose(
        inputs(
            [ref("10.0.0.2", VOL[A])],
            in_force=in_force({A: ["10.0.0.1"], B: INST[B]}),
            snapshot=snapshot(incomplete={A: "503 from Nova"}),
        )
    )
    c = only(rep)
    assert c["cause"] == "not-exported" and "503 from Nova" in c["notes"][0]
    assert any("incomplete for proja" in w for w in rep["warnings"])


def test_causes_come_most_important_first() -> None:
    rs = [ref("10.0.1.1", VOL[A])] * 9 + [ref("192.0.2.5", VOL[A]), ref("192.0.2.9", VOL[A])]
    rs += [ref("192.0.2.1", VOL[A]), ref("192.0.2.1", VOL[B])]
    order = [c["cause"] for c in dx.diagnose(inputs(rs))["causes"]]
    assert order == ["wrong-source-address", "unknown-address", "other-project"]


def test_the_check_line_is_one_bounded_line() -> None:
    rs = [ref(f"192.0.2.{i}", f"/nowhere/{'x' * 200}{i}") for i in range(200)]
    broken = [dx.SourceReport(f"file:/{'x' * 100}{i}", error="cannot read it") for i in range(9)]
    line = dx.check_line(dx.diagnose(inputs(rs, sources=broken)))
    assert "\n" not in line and len(line) < 1024
    text, perf = line.split(" | ")
    assert len(text) <= dx.CHECK_MAX_TEXT + len("NFS-EXPORTD-DIAGNOSE WARNING - ")
    assert "refusals=200" in perf and "path_not_served=200" in perf


def test_a_source_that_cannot_be_read_warns_and_all_unreadable_is_unknown() -> None:
    bad = dx.SourceReport("file:/x", error="cannot read /x")
    ok = dx.SourceReport("journal-id:rpc.mountd")
    assert dx.diagnose(inputs([], sources=[bad, ok]))["verdict"]["code"] == 1
    rep = dx.diagnose(inputs([], sources=[bad]))
    assert rep["verdict"]["code"] == 3 and "source file:/x: cannot read /x" in dx.check_line(rep)


@pytest.mark.parametrize(
    ("levels", "warn"),
    [
        ({"COMPONENT_EXPORT": "NIV_INFO"}, None),
        ({"COMPONENT_EXPORT": "NIV_FULL_DEBUG"}, None),
        ({"COMPONENT_EXPORT": "NIV_EVENT", "COMPONENT_NFSPROTO": "NIV_INFO",
          "COMPONENT_NFS_V4": "NIV_INFO"}, "hides v3 requests on mounts already made"),
        ({"COMPONENT_EXPORT": "NIV_EVENT", "COMPONENT_NFSPROTO": "NIV_EVENT",
          "COMPONENT_NFS_V4": "NIV_EVENT"}, dx.LEVEL_TOO_LOW),
        ("ConnectionRefusedError: no bus", "could not be read over DBus"),
    ],
)  # fmt: skip
def test_ganesha_log_level_advice(levels: dict[str, str] | str, warn: str | None) -> None:
    got = dx.log_level_warnings(levels)
    if warn is None:
        assert got == []
        return
    assert len(got) == 1 and warn in got[0]
    assert "variant:string:NIV_INFO" in got[0] and "EXPORT = INFO" in got[0]
    too_low = got[0].startswith(dx.LEVEL_TOO_LOW)
    assert dx.diagnose(inputs([], warnings=got))["verdict"]["code"] == (1 if too_low else 0)


# -- config, command line, metrics --------------------------------------------------------


def write_config(tmp_path: Path, diagnose: Any) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(
        yaml.safe_dump(
            {"projects_file": "projects.yaml", "serve": {"hosts": ["h"]}, "diagnose": diagnose}
        )
    )
    return p


def test_config_sources_resolve_and_default_by_backend(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, {"sources": [{"kind": "file", "path": "g.log"}]}))
    (src,) = cfg.diagnose.sources_for(cfg.backend)
    assert src.path == tmp_path / "g.log" and src.label() == f"file:{tmp_path / 'g.log'}"
    cfg = load_config(write_config(tmp_path, {}))
    assert [s.label() for s in cfg.diagnose.sources_for("exportfs")] == ["journal-id:rpc.mountd"]
    assert [s.label() for s in cfg.diagnose.sources_for("ganesha")] == [
        "file:/var/log/ganesha/ganesha.log"
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"sources": [{"kind": "file"}]},
        {"sources": [{"kind": "journal"}]},
        {"sources": [{"kind": "journal", "unit": "a", "identifier": "b"}]},
        {"sources": [{"kind": "journal", "unit": "a; rm -rf /"}]},
        {"sources": [{"kind": "syslog", "path": "/x"}]},
        {"window_seconds": 0},
    ],
)
def test_bad_diagnose_config_names_the_key(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, bad))
    assert "diagnose." in str(e.value) and str(tmp_path) in str(e.value)


def test_bad_command_line_is_a_usage_error(tmp_path: Path) -> None:
    from nfs_exportd.cli import main

    cfg = write_config(tmp_path, {})
    assert main(["--config", str(cfg), "diagnose", "--since", "soon"]) == 2
    assert main(["--config", str(cfg), "diagnose", "--source", "syslog:/x"]) == 2


def test_the_refusal_metrics(tmp_path: Path) -> None:
    from nfs_exportd.ops.metrics import DIAGNOSE_METRIC_NAMES, write_refusals

    out = tmp_path / "refusals.prom"
    write_refusals(out, {"wrong-source-address": 7}, 1234.0)
    text = out.read_text()
    assert 'nfs_exportd_refusals{cause="wrong-source-address"} 7.0' in text
    assert 'nfs_exportd_refusals{cause="other-project"} 0.0' in text
    assert "nfs_exportd_diagnose_timestamp_seconds 1234.0" in text
    assert {
        "nfs_exportd_refusals",
        "nfs_exportd_diagnose_timestamp_seconds",
    } == DIAGNOSE_METRIC_NAMES
    install = (Path(__file__).resolve().parents[1] / "docs" / "install.md").read_text()
    assert all(f"`{m}`" in install for m in DIAGNOSE_METRIC_NAMES)


def test_the_bench_runs_small() -> None:
    path = Path(__file__).resolve().parents[1] / "bench" / "diagnose.py"
    proc = subprocess.run(
        [sys.executable, str(path), "--lines", "20000", "--projects", "50"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["refusal_lines"] == 2000 and sum(out["causes"].values()) == 2000
    assert set(out["causes"]) == {"wrong-source-address", "other-project"}
    assert out["read_15m_lines"] < 1000
    assert importlib.util.find_spec("nfs_exportd") is not None
