"""The config file (issue 2, point 2): bad config exits 2 naming the file and the dotted key
and changes nothing; and every key of the contract has an effect (each test here fails if
its key were ignored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import HOST, SANDBOX, Lab
from nfs_exportd.cli import main

# --------------------------------------------------------------------------- helpers

Snapshot = tuple[set[tuple[str, str]], dict[str, str]]


def snapshot(lab: Lab) -> Snapshot:
    return lab.in_force(), lab.files()


def run_raw(lab: Lab, *args: str, config: Path | None = None) -> int:
    """Run the CLI without rewriting the lab's files first (lab.cli() rewrites them)."""
    pre = ["--config", str(config or lab.config_path)]
    if os.geteuid() == 0:
        pre.append("--allow-root")
    return main([*pre, *args])


def plan_json(lab: Lab, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert lab.cli("plan", "--json") == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def reasons(plan: dict[str, Any]) -> set[str]:
    return {h["reason"] for h in plan["holds"]}


def etab_options(lab: Lab) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for line in lab.etab.read_text().splitlines():
        path, _, rest = line.rpartition("\t")
        client, _, opts = rest.partition("(")
        out[(path, client)] = set(opts.rstrip(")").split(","))
    return out


def one_confirmation(lab: Lab) -> None:
    lab.config["safety"] = {
        "removal_confirmations": 1,
        "max_removal_fraction": 1.0,
        "min_removal_count": 0,
    }


@pytest.fixture
def good(lab: Lab) -> tuple[Lab, Snapshot]:
    """After a good sync, with changes pending that a bad config must not let through."""
    one_confirmation(lab)
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    before = snapshot(lab)
    assert len(before[0]) == 2
    lab.remove_instance("i-2")
    lab.add_instance("i-3", "tools", "172.16.0.7")
    return lab, before


def set_key(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[last] = value


def del_key(cfg: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        cfg = cfg[p]
    del cfg[last]


def assert_rejected(
    lab: Lab,
    before: Snapshot,
    capsys: pytest.CaptureFixture[str],
    *named: str,
    file: Path | None = None,
    write: bool = True,
) -> str:
    capsys.readouterr()
    assert (lab.cli("sync") if write else run_raw(lab, "sync")) == 2
    err = capsys.readouterr().err
    assert str(file or lab.config_path) in err, err
    for n in named:
        assert n in err, f"{n!r} not named in: {err}"
    assert snapshot(lab) == before
    assert run_raw(lab, "plan") == 2
    assert snapshot(lab) == before
    return err


# --------------------------------------------------------------------------- bad config

UNKNOWN_KEYS = [
    ("exports_directory", "/etc/exports.d"),
    ("interval", 60),
    ("safety.removal_confirmation", 3),  # the typo that must not fall back to a default
    ("safety.max_removal_percent", 25),
    ("export_options.volume", {"home": "rw,sync,no_subtree_check"}),
    ("serve.host", "nfs-1.svc.example"),
    ("inventory.files", "inventory.yaml"),
    ("public_exports.scratch.client", ["172.16.0.0/21"]),
    ("metrics.port", 9464),
    ("check.warn_after_seconds", 600),
    ("maintenance.max_age", 3600),
    ("history.retention", 30),
]


@pytest.mark.parametrize(("key", "value"), UNKNOWN_KEYS, ids=[k for k, _ in UNKNOWN_KEYS])
def test_unknown_key(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], key: str, value: Any
) -> None:
    lab, before = good
    if key.startswith("public_exports."):
        lab.config["public_exports"] = {
            "scratch": {"path": lab.srv("scratch"), "clients": ["172.16.0.0/21"]}
        }
    set_key(lab.config, key, value)
    err = assert_rejected(lab, before, capsys, f": {key}: ")
    assert "unknown key" in err


WRONG = [
    ("interval_seconds", "60"),
    ("interval_seconds", True),
    ("interval_seconds", 0),
    ("exportfs_timeout_seconds", "60"),
    ("exportfs_timeout_seconds", 0),
    ("exportfs_timeout_seconds", -5),
    ("exportfs_command", "sudo -n /usr/sbin/exportfs"),
    ("exportfs_command", []),
    ("serve.hosts", HOST),
    ("serve.hosts", []),
    ("serve.hosts", ["nfs 1"]),
    ("serve", [HOST]),
    ("safety.removal_confirmations", "3"),
    ("safety.removal_confirmations", 0),
    ("safety.removal_confirmations", 2.5),
    ("safety.max_removal_fraction", 1.5),
    ("safety.max_removal_fraction", 0),
    ("safety.max_removal_fraction", True),
    ("safety.max_removal_fraction", "0.25"),
    ("safety.min_removal_count", -1),
    ("safety.min_removal_count", "10"),
    ("safety", 3),
    ("export_options.default", "rw sync"),
    ("export_options.default", "(rw)"),
    ("export_options.default", "-rw"),
    ("export_options.default", ""),
    ("export_options.default", "rw,insecure_locks"),
    ("export_options.volumes", ["home"]),
    ("export_options.volumes", {"home": "rw sync"}),
    ("export_options.projects", {"tools": "rw"}),
    ("export_options.projects", {"tools": {"home": "rw,sync *"}}),
    ("inventory.source", "ldap"),
    ("inventory.mode", "some-projects"),
    ("inventory.file", 17),
    ("projects_file", 17),
    ("projects_file", ["projects.yaml"]),
    ("state_dir", ["state"]),
    ("exports_dir", {"a": 1}),
    ("maintenance_file", 1),
    ("etab_file", False),
    ("backend", "ganesha-someday"),
    ("public_exports", ["scratch"]),
    # operations (issue 5)
    ("metrics.listen", "localhost"),
    ("metrics.listen", "127.0.0.1:0"),
    ("metrics.listen", 9464),
    ("metrics.textfile", 5),
    ("metrics", "on"),
    ("check.warning_after_seconds", 0),
    ("check.critical_after_seconds", "1h"),
    ("check.warning_after_seconds", 7200),  # above critical_after_seconds (3600)
    ("maintenance.max_age_seconds", -1),
    ("maintenance.max_age_seconds", True),
    ("history.retention_days", 0),
    ("history.max_entries", 1),
    ("history.max_entries", 2.5),
    ("notifications.transport_url", "http://broker:5672/"),
    ("notifications.topics", ["notifications.info"]),
    ("notifications.topics", []),
    ("notifications.exchanges", ["nova exchange"]),
    ("notifications.pool", "a pool"),
    ("notifications.retry_max_seconds", 0),
    ("change_polling.poll_seconds", 0.5),
    ("early_cycles.debounce_seconds", -1),
    ("early_cycles.max_requests_per_minute", 0),
]


@pytest.mark.parametrize(("key", "value"), WRONG, ids=[f"{k}={v!r}" for k, v in WRONG])
def test_wrong_type_or_value(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], key: str, value: Any
) -> None:
    lab, before = good
    set_key(lab.config, key, value)
    assert_rejected(lab, before, capsys, f": {key}")


PUBLIC_BAD = [
    ({"path": "srv/scratch", "clients": ["172.16.0.0/21"]}, "public_exports.scratch.path"),
    ({"path": "/srv/scr atch", "clients": ["172.16.0.0/21"]}, "public_exports.scratch.path"),
    ({"path": "@SCRATCH", "clients": ["everyone"]}, "public_exports.scratch.clients[0]"),
    ({"path": "@SCRATCH", "clients": ["172.16.0.1/21"]}, "public_exports.scratch.clients[0]"),
    ({"path": "@SCRATCH", "clients": ["*"]}, "public_exports.scratch.clients[0]"),
    ({"path": "@SCRATCH", "clients": []}, "public_exports.scratch.clients"),
    ({"path": "@SCRATCH"}, "public_exports.scratch.clients"),
    ({"path": "@SCRATCH", "clients": ["172.16.0.0/21"], "options": "rw ro"}, "options"),
    ({"path": "@TOOLS", "clients": ["172.16.0.0/21"]}, "public_exports.scratch.path"),
]


@pytest.mark.parametrize(("body", "key"), PUBLIC_BAD, ids=[str(i) for i in range(len(PUBLIC_BAD))])
def test_bad_public_export(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], body: dict[str, Any], key: str
) -> None:
    lab, before = good
    body = dict(body)
    if body.get("path") == "@SCRATCH":
        body["path"] = lab.srv("scratch")
    elif body.get("path") == "@TOOLS":  # overlaps a project's private export
        body["path"] = lab.srv("tools")
    lab.config["public_exports"] = {"scratch": body}
    assert_rejected(lab, before, capsys, key)


@pytest.mark.parametrize("name", ["bad name", "a/b", "x#", "..", "caf\u00e9"])
def test_bad_public_export_name(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    lab, before = good
    lab.config["public_exports"] = {
        name: {"path": lab.srv("scratch"), "clients": ["172.16.0.0/21"]}
    }
    assert_rejected(lab, before, capsys, "public_exports.")


@pytest.mark.parametrize("key", ["projects_file", "serve", "serve.hosts"])
def test_required_key_missing(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], key: str
) -> None:
    lab, before = good
    del_key(lab.config, key)
    err = assert_rejected(lab, before, capsys, f": {key}: ")
    assert "missing" in err


def test_notifications_enabled_without_transport_url(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["notifications"] = {"enabled": True}
    assert_rejected(lab, before, capsys, "notifications.transport_url: required")


def test_change_polling_needs_an_openstack_inventory(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["change_polling"] = {"enabled": True}
    assert_rejected(lab, before, capsys, "change_polling.enabled: needs inventory.source")


def test_static_inventory_without_file(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    del lab.config["inventory"]["file"]
    assert_rejected(lab, before, capsys, "inventory.file")


def test_missing_config_file(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    missing = lab.root / "nowhere" / "config.yaml"
    capsys.readouterr()
    for cmd in ("sync", "plan", "status"):
        assert run_raw(lab, cmd, config=missing) == 2
        err = capsys.readouterr().err
        assert str(missing) in err and "not found" in err
    assert snapshot(lab) == before


def test_config_is_a_directory(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    capsys.readouterr()
    assert run_raw(lab, "sync", config=lab.root) == 2
    assert str(lab.root) in capsys.readouterr().err
    assert snapshot(lab) == before


def test_missing_projects_file(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["projects_file"] = "no-such-projects.yaml"
    missing = lab.root / "no-such-projects.yaml"
    err = assert_rejected(lab, before, capsys, "projects_file", file=missing)
    assert "not found" in err


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("serve: {hosts: [nfs-1\n", "not valid YAML"),
        ("serve:\n  hosts:\n  - a\n\tbad: tab\n", "not valid YAML"),
        ("- projects_file\n", "mapping"),
        ("", "mapping"),
        ("just a string\n", "mapping"),
        (b"projects_file: p\xe9.yaml\n", "cannot read"),
    ],
    ids=["unclosed", "tab", "list", "empty", "scalar", "latin1"],
)
def test_unparsable_config(
    good: tuple[Lab, Snapshot],
    capsys: pytest.CaptureFixture[str],
    content: str | bytes,
    what: str,
) -> None:
    lab, before = good
    lab.write()
    if isinstance(content, bytes):
        lab.config_path.write_bytes(content)
    else:
        lab.config_path.write_text(content)
    err = assert_rejected(lab, before, capsys, what, write=False)
    assert "Traceback" not in err


def test_all_config_errors_reported_at_once(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["safety"]["removal_confirmation"] = 3
    lab.config["interval_seconds"] = "soon"
    lab.config["exportfs_commands"] = ["x"]
    assert_rejected(
        lab,
        before,
        capsys,
        "safety.removal_confirmation",
        "interval_seconds",
        "exportfs_commands",
    )


def test_config_error_in_run_exits_2_before_any_cycle(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["safety"]["removal_confirmation"] = 3
    capsys.readouterr()
    assert lab.cli("run") == 2
    assert "safety.removal_confirmation" in capsys.readouterr().err
    assert snapshot(lab) == before


# ------------------------------------------------------------------ every key has an effect


def test_projects_file_relative_to_config_dir(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.add_project("tools", 50380)  # in lab/projects.yaml, which is NOT the configured file
    lab.add_project("paws", 52771)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "paws", "172.16.1.5")
    other = lab.root / "conf.d" / "other-projects.yaml"
    other.parent.mkdir()
    other.write_text(
        yaml.safe_dump({"paws": {"gid": 52771, "mounts": {"home": f"{HOST}:{lab.srv('paws')}"}}})
    )
    lab.config["projects_file"] = "conf.d/other-projects.yaml"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert lab.cli("sync") == 0
    assert set(lab.files()) == {"paws.exports"}
    assert lab.in_force() == {(lab.srv("paws"), "172.16.1.5")}


def test_serve_hosts(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.add_project("maps", 50444, {"home": lab.srv("maps", "home")})
    lab.projects["maps"]["mounts"]["home"] = f"nfs-2.svc.example:{lab.srv('maps', 'home')}"
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "maps", "172.16.2.5")
    lab.config["serve"]["hosts"] = ["nfs-2.svc.example"]
    assert lab.cli("sync") == 0
    assert set(lab.files()) == {"maps.exports"}
    assert lab.in_force() == {(lab.srv("maps", "home"), "172.16.2.5")}
    lab.config["serve"]["hosts"] = ["nfs-2.svc.example", HOST]
    assert lab.cli("sync") == 0
    assert set(lab.files()) == {"maps.exports", "tools.exports"}
    assert (lab.srv("tools", "home"), "172.16.0.5") in lab.in_force()


def test_export_options_precedence(lab: Lab) -> None:
    """project/volume override, then volume override, then the default."""
    vols = {v: lab.srv(p, v) for p in ("tools",) for v in ("home", "project", "scratch")}
    lab.add_project("tools", 50380, vols)
    lab.add_project("paws", 52771, {v: lab.srv("paws", v) for v in ("home", "project")})
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "paws", "172.16.1.5")
    lab.config["export_options"] = {
        "default": "rw,sync,no_subtree_check,root_squash,anonuid=65534",
        "volumes": {
            "home": "rw,sync,no_subtree_check,no_root_squash",
            "project": "ro,sync,no_subtree_check,root_squash",
        },
        "projects": {"tools": {"home": "rw,async,no_subtree_check,all_squash"}},
    }
    assert lab.cli("sync") == 0
    files = lab.files()
    assert (
        f"{lab.srv('tools', 'home')} -rw,async,no_subtree_check,all_squash 172.16.0.5"
        in (files["tools.exports"])
    )
    assert (
        f"{lab.srv('tools', 'project')} -ro,sync,no_subtree_check,root_squash 172.16.0.5"
        in (files["tools.exports"])
    )
    assert (
        f"{lab.srv('tools', 'scratch')} -rw,sync,no_subtree_check,root_squash,anonuid=65534 "
        "172.16.0.5"
    ) in files["tools.exports"]
    assert (
        f"{lab.srv('paws', 'home')} -rw,sync,no_subtree_check,no_root_squash 172.16.1.5"
        in (files["paws.exports"])
    )
    etab = etab_options(lab)
    th = etab[(lab.srv("tools", "home"), "172.16.0.5")]
    assert {"rw", "async", "all_squash"} <= th and "sync" not in th
    tp = etab[(lab.srv("tools", "project"), "172.16.0.5")]
    assert {"ro", "sync", "root_squash"} <= tp and "rw" not in tp
    ts = etab[(lab.srv("tools", "scratch"), "172.16.0.5")]
    assert {"rw", "sync", "root_squash", "anonuid=65534"} <= ts
    ph = etab[(lab.srv("paws", "home"), "172.16.1.5")]
    assert {"rw", "no_root_squash"} <= ph
    pp = etab[(lab.srv("paws", "project"), "172.16.1.5")]
    assert "ro" in pp


def test_public_exports(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    scratch = lab.srv("scratch")
    lab.config["public_exports"] = {
        "scratch": {
            "path": scratch,
            "clients": ["172.16.0.0/21", "fd00:1::/64", "198.51.100.7"],
            "options": "rw,sync,no_subtree_check,all_squash",
        },
        "dumps": {"path": lab.srv("dumps"), "clients": ["172.16.0.0/12"]},
    }
    assert lab.cli("sync") == 0
    files = lab.files()
    assert files["public-scratch.exports"] == (
        "# nfs-exportd managed file, do not edit: public=scratch\n"
        f"{scratch} -rw,sync,no_subtree_check,all_squash 198.51.100.7 172.16.0.0/21 fd00:1::/64\n"
    )
    assert files["public-dumps.exports"].endswith(
        f"{lab.srv('dumps')} -rw,sync,no_subtree_check,root_squash 172.16.0.0/12\n"
    )
    pairs = lab.in_force()
    assert {
        (scratch, "172.16.0.0/21"),
        (scratch, "198.51.100.7"),
        (lab.srv("dumps"), "172.16.0.0/12"),
    } <= pairs
    assert any(p == scratch and c.startswith("fd00:1::") for p, c in pairs)
    assert "all_squash" in etab_options(lab)[(scratch, "172.16.0.0/21")]


def test_inventory_file_relative_to_config_dir(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")  # in lab/inventory.yaml: NOT configured
    other = lab.root / "inv" / "from-other-tool.yaml"
    other.parent.mkdir()
    other.write_text(
        yaml.safe_dump(
            {
                "projects": [{"id": "x", "name": "tools", "enabled": True}],
                "instances": [
                    {
                        "id": "i-9",
                        "name": "tools-9",
                        "project": "tools",
                        "status": "ACTIVE",
                        "addresses": ["172.16.0.99"],
                    }
                ],
            }
        )
    )
    lab.config["inventory"]["file"] = "inv/from-other-tool.yaml"
    monkeypatch.chdir(tmp_path)
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(lab.srv("tools", "home"), "172.16.0.99")}


def test_inventory_source_is_not_ignored(
    good: tuple[Lab, Snapshot],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """source: openstack must not read the static file: with no such clouds.yaml entry
    the cycle fails as a configuration error (exit 2, issue 14: not an outage); the static
    file's pending changes are not applied."""
    lab, before = good
    empty = tmp_path / "clouds.yaml"
    empty.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(empty))
    lab.config["inventory"]["source"] = "openstack"
    lab.config["inventory"]["cloud"] = "no-such-cloud"
    capsys.readouterr()
    assert lab.cli("sync") == 2
    assert "inventory.cloud: clouds.yaml entry 'no-such-cloud' does not exist" in (
        capsys.readouterr().err
    )
    assert snapshot(lab) == before


def test_exports_dir_relative_to_config_dir(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.config["exports_dir"] = "sb/exports.d"
    monkeypatch.chdir(tmp_path)
    assert lab.cli("sync") == 0
    assert set(lab.files()) == {"tools.exports"}
    assert lab.in_force() == {(lab.srv("tools", "home"), "172.16.0.5")}
    # and the scan reads that directory: an unmanaged project file there is left alone
    lab.add_project("paws", 52771)
    (lab.exports_dir / "paws.exports").write_text(f"{lab.srv('paws', 'home')} 172.16.9.9(ro)\n")
    assert "unmanaged-conflict" in reasons(plan_json(lab, capsys))


def test_state_dir_holds_the_counters(lab: Lab) -> None:
    """Confirmations counted in state_dir A do not count in state_dir B."""
    lab.config["safety"] = {"removal_confirmations": 2, "max_removal_fraction": 1.0}
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    home = lab.srv("tools", "home")
    lab.config["state_dir"] = "state-a"
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 3  # 1 of 2, counted in state-a
    lab.config["state_dir"] = "state-b"
    assert lab.cli("sync") == 3  # 1 of 2 in state-b: not confirmed
    assert (home, "172.16.0.6") in lab.in_force()
    lab.config["state_dir"] = "state-a"
    assert lab.cli("sync") == 0  # 2 of 2 in state-a
    assert lab.in_force() == {(home, "172.16.0.5")}
    for d in ("state-a", "state-b"):
        assert (lab.root / d / "status.json").exists()
    assert not lab.state_dir.exists()


def test_status_reads_state_dir(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.config["state_dir"] = str(lab.root / "elsewhere")
    assert lab.cli("sync") == 0
    capsys.readouterr()
    assert lab.cli("status", "--json") == 0
    st = json.loads(capsys.readouterr().out)
    assert st["last_cycle"]["result"] == "ok"
    lab.config["state_dir"] = str(lab.root / "empty")
    assert lab.cli("status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["last_cycle"] is None


def _wrapper(lab: Lab, body: str) -> str:
    script = lab.root / "exportfs-wrapper"
    script.write_text(f"#!/bin/bash\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_exportfs_command(lab: Lab) -> None:
    log = lab.root / "calls.log"
    lab.config["exportfs_command"] = [
        _wrapper(lab, f'echo "$*" >> {log}\nexec "$@"'),
        str(SANDBOX),
        str(lab.root / "sb"),
    ]
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    assert lab.cli("sync") == 0
    calls = log.read_text().splitlines()
    assert calls and all(c.startswith(f"{SANDBOX} {lab.root / 'sb'} ") for c in calls)
    assert any(c.endswith(" -ra") for c in calls)
    assert lab.in_force() == {(lab.srv("tools", "home"), "172.16.0.5")}


def test_exportfs_command_failing(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["exportfs_command"] = [_wrapper(lab, "echo 'exportfs: broken' >&2; exit 1")]
    capsys.readouterr()
    assert lab.cli("sync") == 1
    assert "broken" in capsys.readouterr().err
    assert snapshot(lab) == before


def test_exportfs_timeout_seconds(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["exportfs_command"] = [
        _wrapper(lab, 'sleep 6; exec "$@"'),
        str(SANDBOX),
        str(lab.root / "sb"),
    ]
    lab.config["exportfs_timeout_seconds"] = 1
    capsys.readouterr()
    t0 = time.monotonic()
    assert lab.cli("sync") == 1
    assert time.monotonic() - t0 < 5  # two calls (apply, undo) of at most ~1 s each
    err = capsys.readouterr().err
    assert "exportfs_timeout_seconds" in err
    assert snapshot(lab) == before


def test_etab_file_is_what_gets_verified(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    """Read-back uses etab_file: pointed at a file exportfs does not write, the read-back
    fails, the cycle's files are restored and the exit is 1."""
    lab, before = good
    decoy = lab.root / "decoy-etab"
    decoy.write_text("")
    lab.config["etab_file"] = str(decoy)
    capsys.readouterr()
    assert lab.cli("sync") == 1
    assert "not in force" in capsys.readouterr().err
    assert snapshot(lab) == before


def test_etab_file_relative_to_config_dir(
    good: tuple[Lab, Snapshot], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, _ = good
    lab.config["etab_file"] = "sb/lib/etab"
    monkeypatch.chdir(tmp_path)
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(lab.srv("tools", "home"), a) for a in ("172.16.0.5", "172.16.0.7")}


def test_maintenance_file_hold_then_freeze(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_confirmation(lab)
    lab.config["maintenance_file"] = "flags/maintenance"  # relative to the config file
    monkeypatch.chdir(tmp_path)
    flag = lab.root / "flags" / "maintenance"
    flag.parent.mkdir()
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0

    flag.write_text("planned network work, T12345\n")
    lab.remove_instance("i-2")
    lab.add_instance("i-3", "tools", "172.16.0.7")
    plan = plan_json(lab, capsys)
    assert reasons(plan) == {"maintenance"}
    assert lab.cli("sync") == 3
    # additions apply, removals are held
    assert lab.in_force() == {(home, a) for a in ("172.16.0.5", "172.16.0.6", "172.16.0.7")}

    flag.write_text("freeze\n")
    lab.remove_instance("i-1")
    lab.add_instance("i-4", "tools", "172.16.0.8")
    before = snapshot(lab)
    assert reasons(plan_json(lab, capsys)) == {"freeze"}
    assert lab.cli("sync") == 3
    assert snapshot(lab) == before

    flag.unlink()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, a) for a in ("172.16.0.7", "172.16.0.8")}


def test_removal_confirmations(lab: Lab) -> None:
    """2 (not the default 3): present after 1 complete cycle without it, gone after 2."""
    lab.config["safety"] = {"removal_confirmations": 2, "max_removal_fraction": 1.0}
    lab.add_project("tools", 50380)
    home = lab.srv("tools", "home")
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 3
    assert (home, "172.16.0.6") in lab.in_force()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, "172.16.0.5")}


def test_removal_confirmations_one(lab: Lab) -> None:
    lab.config["safety"] = {"removal_confirmations": 1, "max_removal_fraction": 1.0}
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    assert lab.cli("sync") == 0
    lab.remove_instance("i-2")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(lab.srv("tools", "home"), "172.16.0.5")}


def _eight(lab: Lab, safety: dict[str, Any]) -> str:
    lab.config["safety"] = {"removal_confirmations": 1, **safety}
    lab.add_project("tools", 50380)
    for n in range(8):
        lab.add_instance(f"i-{n}", "tools", f"172.16.0.{10 + n}")
    assert lab.cli("sync") == 0
    assert len(lab.in_force()) == 8
    return lab.srv("tools", "home")


def test_max_removal_fraction_allows(lab: Lab) -> None:
    """3 of 8 (37.5 %) go with 0.4; the default 0.25 would hold them."""
    _eight(lab, {"max_removal_fraction": 0.4, "min_removal_count": 0})
    for n in range(3):
        lab.remove_instance(f"i-{n}")
    assert lab.cli("sync") == 0
    assert len(lab.in_force()) == 5


def test_max_removal_fraction_holds(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """1 of 8 (12.5 %) is held with 0.1; the default 0.25 would let it go."""
    _eight(lab, {"max_removal_fraction": 0.1, "min_removal_count": 0})
    lab.remove_instance("i-0")
    assert reasons(plan_json(lab, capsys)) == {"too-much-change"}
    assert lab.cli("sync") == 3
    assert len(lab.in_force()) == 8
    assert lab.cli("sync", "--force") == 0
    assert len(lab.in_force()) == 7


def test_min_removal_count_holds(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """3 of 8 exceed 0.25; with min_removal_count 2 they are held (default 10 would not)."""
    _eight(lab, {"max_removal_fraction": 0.25, "min_removal_count": 2})
    for n in range(3):
        lab.remove_instance(f"i-{n}")
    assert reasons(plan_json(lab, capsys)) == {"too-much-change"}
    assert lab.cli("sync") == 3
    assert len(lab.in_force()) == 8


def test_min_removal_count_allows(lab: Lab) -> None:
    """3 of 8 exceed 0.25 but are not more than min_removal_count 3: they go."""
    _eight(lab, {"max_removal_fraction": 0.25, "min_removal_count": 3})
    for n in range(3):
        lab.remove_instance(f"i-{n}")
    assert lab.cli("sync") == 0
    assert len(lab.in_force()) == 5


def _run_loop(lab: Lab, interval: float, settle: float) -> tuple[int, list[str]]:
    """Run `nfs-exportd run` as a process; stop it with SIGTERM after ``settle`` s of
    its first cycle; return its exit code and its cycle log lines."""
    lab.config["interval_seconds"] = interval
    lab.write()
    cmd = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(lab.config_path)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    errlog = lab.root / "run.log"
    with errlog.open("w") as err:
        proc = subprocess.Popen([*cmd, "run"], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 20
        while "sync ok" not in errlog.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, [ln for ln in errlog.read_text().splitlines() if "sync ok" in ln]


def test_interval_seconds(lab: Lab) -> None:
    """A 1 s interval gives several cycles in 3.5 s; a 1 h interval gives one."""
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    rc, cycles = _run_loop(lab, 1, 3.5)
    assert rc == 0
    assert 3 <= len(cycles) <= 5, cycles
    rc, cycles = _run_loop(lab, 3600, 2.0)
    assert rc == 0
    assert len(cycles) == 1, cycles
    assert lab.in_force() == {(lab.srv("tools", "home"), "172.16.0.5")}
