"""Issue 10, findings 3 and 4 (files and numbers) and the renderer guard of finding 1.

Files that are not what they seem: YAML aliases/anchors, duplicate keys, oversized files,
infinite or unbounded numbers, serve roots that are system directories; and the renderer,
which refuses any token that does not match its grammar, before anything is written.

Modules new in this issue are imported inside the tests, so that on the code before it
each test fails on its own finding, not on an import.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import HOST, SANDBOX, Lab, finished, wait_for
from nfs_exportd.cli import main
from nfs_exportd.model import ExportLine, ExportsFile
from test_failure_matrix import R1, T2, World, world  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD = 20  # seconds: a refused file takes well under one; the bomb hung > 60 s

Snapshot = tuple[set[tuple[str, str]], dict[str, str]]


# Nine levels of nine: 9**9 (387 million) strings once expanded, 1 KB of text.
def bomb(indent: int) -> str:
    pad = " " * indent
    first = f'{pad}- &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    pairs = zip("abcdefgh", "bcdefghi", strict=True)
    return first + "".join(f"{pad}- &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in pairs)


def snapshot(lab: Lab) -> Snapshot:
    return lab.in_force(), lab.files()


def run_raw(lab: Lab, *args: str) -> int:
    """The CLI without rewriting the lab's files (lab.cli() rewrites them)."""
    pre = ["--config", str(lab.config_path)]
    if os.geteuid() == 0:
        pre.append("--allow-root")
    return main([*pre, *args])


def cli_process(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as its own process under a hang guard (a hang fails the test, and the
    process is killed by ``subprocess.run``)."""
    cmd = [sys.executable, "-m", "nfs_exportd.cli", "--config", str(lab.config_path)]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    try:
        return subprocess.run(
            [*cmd, *args], capture_output=True, text=True, timeout=HANG_GUARD, check=False
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"nfs-exportd {' '.join(args)} hung > {HANG_GUARD} s") from None


@pytest.fixture
def good(lab: Lab) -> tuple[Lab, Snapshot]:
    lab.add_project("tools", 50380, {"home": lab.srv("tools", "home")})
    lab.add_project("paws", 52771)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "paws", "172.16.1.5", "fd00::1:5")
    assert lab.cli("sync") == 0
    before = snapshot(lab)
    assert len(before[0]) == 3
    return lab, before


# --------------------------------------------------------------------------- aliases


@pytest.mark.parametrize("which", ["projects", "config", "inventory"])
def test_alias_bomb_is_refused_fast(good: tuple[Lab, Snapshot], which: str) -> None:
    """An alias bomb in any YAML the daemon reads: refused at once naming file and line
    (projects/config: exit 2; inventory: held, unknown), exports unchanged."""
    lab, before = good
    if which == "projects":
        path = lab.root / "projects.yaml"
        path.write_text(path.read_text() + "bomb:\n  gid: 1\n  mounts:\n    x:\n" + bomb(6))
    elif which == "config":
        path = lab.config_path
        path.write_text(path.read_text() + "public_exports_extra:\n" + bomb(2))
    else:
        path = lab.root / "inventory.yaml"
        path.write_text(path.read_text() + "bomb:\n" + bomb(2))
    started = time.monotonic()
    proc = cli_process(lab, "sync")
    elapsed = time.monotonic() - started
    assert proc.returncode == (3 if which == "inventory" else 2), proc.stderr
    assert f"{path}:" in proc.stderr and "anchor &a" in proc.stderr, proc.stderr
    assert elapsed < HANG_GUARD
    assert snapshot(lab) == before


def test_run_keeps_cycling_and_stops_on_sigterm_after_an_alias_bomb(
    good: tuple[Lab, Snapshot],
) -> None:
    """The outage report's ``run``: it stopped cycling, grew past 1.1 GB and ignored
    SIGTERM.  Now the bomb is a config-invalid hold, cycles go on, SIGTERM stops it."""
    lab, before = good
    start = finished(lab)
    proc = lab.start_run()
    try:
        wait_for(lambda: finished(lab) > start, "the first cycle of run")
        path = lab.root / "projects.yaml"
        path.write_text(path.read_text() + "bomb:\n  gid: 1\n  mounts:\n    x:\n" + bomb(6))
        for _ in range(2):
            seen = finished(lab)
            wait_for(lambda: finished(lab) > seen, "a cycle after the bomb", timeout=15)  # noqa: B023
        st = lab.status()
        assert "config-invalid" in st["holds_by_reason"], st
        assert "anchor &a" in json.dumps(st)
        assert snapshot(lab) == before
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate()
        print(out[-3000:])  # shown when the test fails


def test_anchor_without_alias_and_merge_key_are_refused(lab: Lab) -> None:
    lab.write()
    text = lab.config_path.read_text()
    lab.config_path.write_text(text + "safety: &s {removal_confirmations: 3}\n")
    assert run_raw(lab, "status") == 2
    lab.config_path.write_text(text.replace("safety:", "safety:\n  <<: {min_removal_count: 3}"))
    assert run_raw(lab, "status") == 2


# --------------------------------------------------------------------------- duplicate keys


def test_duplicate_config_key_names_both_lines(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    """The outage report: a second ``safety:`` silently turned removal_confirmations 3
    into 1."""
    lab, before = good
    text = lab.config_path.read_text()
    first = text.splitlines().index("safety:") + 1
    lines = text.splitlines()
    lines += ["safety:", "  removal_confirmations: 1"]
    lab.config_path.write_text("\n".join(lines) + "\n")
    assert run_raw(lab, "sync") == 2
    err = capsys.readouterr().err
    assert f"{lab.config_path}:{len(lines) - 1}:" in err, err
    assert f"duplicate key 'safety' (first at line {first}, again at line {len(lines) - 1})" in err
    assert snapshot(lab) == before


def test_duplicate_project_names_both_lines(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    """A second entry for a project silently dropped a volume; now: exit 2, both lines."""
    lab, before = good
    path = lab.root / "projects.yaml"
    text = path.read_text()
    first = text.splitlines().index("tools:") + 1
    n = len(text.splitlines()) + 1
    path.write_text(text + f"tools:\n  gid: 50380\n  mounts:\n    home: {HOST}:/srv/x\n")
    assert run_raw(lab, "sync") == 2
    err = capsys.readouterr().err
    assert f"{path}:{n}: not valid YAML here: duplicate key 'tools' (first at line {first}" in (err)
    assert snapshot(lab) == before


def test_duplicate_key_in_the_inventory_holds(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    path = lab.root / "inventory.yaml"
    path.write_text(path.read_text() + "instances: []\n")  # a second list: no instances
    assert run_raw(lab, "sync") == 3
    err = capsys.readouterr().err
    assert f"{path}:" in err and "duplicate key 'instances'" in err
    assert snapshot(lab) == before


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")], ids=str)
@pytest.mark.parametrize(
    "key",
    [
        "interval_seconds",
        "exportfs_timeout_seconds",
        "inventory.timeout_seconds",
        "safety.removal_min_age_seconds",
        "safety.max_removal_fraction",
        "check.warning_after_seconds",
        "maintenance.max_age_seconds",
        "history.retention_days",
    ],
)
def test_infinite_or_nan_numbers_are_refused(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], key: str, value: float
) -> None:
    """``.inf`` killed ``run`` (interval), failed every cycle (inventory timeout) or let
    changes go without read-back, undo or journal (exportfs timeout)."""
    lab, before = good
    section, _, leaf = key.rpartition(".")
    target: dict[str, Any] = lab.config.setdefault(section, {}) if section else lab.config
    target[leaf] = value
    lab.write()
    assert run_raw(lab, "sync") == 2
    err = capsys.readouterr().err
    assert f"{lab.config_path}: {key}:" in err, err
    assert snapshot(lab) == before


@pytest.mark.parametrize(
    ("key", "bound"),
    [
        ("interval_seconds", 86400),
        ("exportfs_timeout_seconds", 3600),
        ("inventory.timeout_seconds", 3600),
        ("safety.removal_confirmations", 1000),
        ("safety.removal_min_age_seconds", 90 * 86400),
        ("history.max_entries", 1_000_000),
        ("inventory.file_max_bytes", 1024**3),
        ("projects_file_max_bytes", 1024**3),
    ],
)
def test_numbers_have_upper_bounds(
    lab: Lab, capsys: pytest.CaptureFixture[str], key: str, bound: int
) -> None:
    section, _, leaf = key.rpartition(".")
    target: dict[str, Any] = lab.config.setdefault(section, {}) if section else lab.config
    target[leaf] = bound

    assert lab.cli("status") == 0
    target[leaf] = bound + 1
    assert lab.cli("status") == 2
    err = capsys.readouterr().err
    assert f"{key}: Input should be less than or equal to {bound}" in err


def test_a_huge_integer_is_a_config_error_not_a_traceback(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.write()
    text = lab.config_path.read_text().replace("interval_seconds: 1\n", "")
    lab.config_path.write_text(text + "interval_seconds: 1" + "0" * 400 + "\n")
    assert run_raw(lab, "status") == 2
    assert f"{lab.config_path}: interval_seconds: Value error, number too large" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("gid", [2**32 - 1, 2**40, -1, 1.5, float("inf")], ids=str)
def test_projects_gid_is_a_bounded_integer(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str], gid: Any
) -> None:
    lab, before = good
    lab.projects["paws"]["gid"] = gid
    assert lab.cli("sync") == 2
    err = capsys.readouterr().err
    assert "project 'paws': gid must be an integer from 0 to 4294967294" in err
    assert snapshot(lab) == before


# --------------------------------------------------------------------------- sizes


def test_oversized_projects_file(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["projects_file_max_bytes"] = 2048
    lab.write()
    path = lab.root / "projects.yaml"
    path.write_text(path.read_text() + "# padding\n" * 300)
    assert run_raw(lab, "sync") == 2
    err = capsys.readouterr().err
    assert f"{path}: the projects file is larger than 2048 bytes" in err
    assert "projects_file_max_bytes" in err
    assert snapshot(lab) == before


def test_oversized_inventory_holds(
    good: tuple[Lab, Snapshot], capsys: pytest.CaptureFixture[str]
) -> None:
    lab, before = good
    lab.config["inventory"]["file_max_bytes"] = 1024
    lab.write()
    path = lab.root / "inventory.yaml"
    path.write_text(path.read_text() + "# padding\n" * 200)
    assert run_raw(lab, "sync") == 3
    err = capsys.readouterr().err
    assert f"{path}: the inventory is larger than 1024 bytes" in err
    assert "inventory.file_max_bytes" in err
    assert snapshot(lab) == before


def test_oversized_config_file(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    lab.write()
    with lab.config_path.open("a") as f:
        f.write("#" * 80 + "\n")
        f.write(("# " + "x" * 1000 + "\n") * 1100)  # > 1 MiB of comments
    assert run_raw(lab, "status") == 2
    err = capsys.readouterr().err
    assert f"{lab.config_path}: the config file is larger than" in err


def test_the_c_parser_is_used_and_the_pure_python_one_refuses_the_same() -> None:
    """The install must bring libyaml (the pure-Python parser takes ~6 s for a 1 MB
    inventory); without it, the same refusals hold."""
    yamlsafe = importlib.import_module("nfs_exportd.yamlsafe")
    assert yaml.__with_libyaml__ and yamlsafe.LIBYAML
    code = (
        "import sys; sys.modules['yaml._yaml'] = None\n"
        "from nfs_exportd import yamlsafe as y\n"
        "assert not y.LIBYAML\n"
        "for t in ['a: 1\\na: 2\\n', 'a: &x [1]\\nb: *x\\n', 'a: ' + '[' * 500 + ']' * 500]:\n"
        "    try:\n"
        "        y.loads(t, 'f.yaml')\n"
        "    except y.YamlRefused as e:\n"
        "        print(e)\n"
        "print(y.loads('a: {b: [1, 2]}\\n', 'f.yaml'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert len(out) == 4, out
    assert "duplicate key 'a'" in out[0] and "anchor &x" in out[1] and "nested" in out[2]
    assert out[3] == "{'a': {'b': [1, 2]}}"


def test_deep_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    """100,000 nested brackets crash libyaml's composer (the C stack); refused here."""
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    code = (
        "import sys\nfrom nfs_exportd import yamlsafe as y\n"
        "try:\n    y.load_file(__import__('pathlib').Path(sys.argv[1]), 10**7, 'x')\n"
        "except y.YamlRefused as e:\n    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "nested more than 64 levels" in proc.stdout


# --------------------------------------------------------------------------- serve.roots


@pytest.mark.parametrize(
    ("roots", "what"),
    [
        (["/"], "system directory (/)"),
        (["/etc"], "system directory (/etc)"),
        (["/usr/local/exports"], "system directory (/usr)"),
        (["/var"], "system directory (/var)"),
        (["srv"], "relative"),
        (["/srv/a b"], "not allowed"),
        ([], "at least 1 item"),
    ],
)
def test_bad_serve_roots(
    lab: Lab, capsys: pytest.CaptureFixture[str], roots: list[str], what: str
) -> None:
    lab.config["serve"]["roots"] = roots
    assert lab.cli("status") == 2
    err = capsys.readouterr().err
    assert f"{lab.config_path}: serve.roots" in err and what in err


def test_serve_roots_default_is_srv(lab: Lab) -> None:
    from nfs_exportd.config import load_config

    del lab.config["serve"]["roots"]
    lab.write()
    assert load_config(lab.config_path).serve.roots == ["/srv"]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the renderer


def _file(
    *,
    path: str = "/srv/tools/home",
    options: str = "rw,sync,no_subtree_check,root_squash",
    clients: tuple[str, ...] = ("172.16.0.5",),
    owner: str = "tools",
    kind: str = "project",
) -> ExportsFile:
    prefix = "public-" if kind == "public" else ""
    return ExportsFile(
        f"{prefix}{owner}.exports", kind, owner, (ExportLine(path, options, clients),)
    )


BAD_FILES = {
    "zone id": _file(clients=("fe80::1%x *(rw,no_root_squash,insecure)",)),
    "space in client": _file(clients=("172.16.0.5 *",)),
    "star": _file(clients=("*",)),
    "v4-mapped": _file(clients=("::ffff:172.16.0.5",)),
    "not canonical v6": _file(clients=("FD00::0:5",)),
    "host name": _file(clients=("evil.example",)),
    "loopback": _file(clients=("127.0.0.1",)),
    "no client": _file(clients=()),
    "newline in path": _file(path="/srv/tools/home\n/ *"),
    "space in path": _file(path="/srv/tools home"),
    "dotdot in path": _file(path="/srv/tools/../../etc"),
    "relative path": _file(path="srv/tools"),
    "unnormalised path": _file(path="/srv//tools/"),
    "backslash in path": _file(path="/srv/\\057etc"),
    "the whole file system": _file(path="/"),
    "space in options": _file(options="rw, no_root_squash"),
    "parenthesis in options": _file(options="rw)"),
    "newline in options": _file(options="rw\n/etc *(rw"),
    "star in options": _file(options="rw,*"),
    "bad owner": _file(owner="../etc"),
    "kind and name disagree": replace(_file(kind="public"), filename="scratch.exports"),
}


def test_a_kind_outside_the_header_grammar_is_refused_before_any_render() -> None:
    """``project`` and ``public`` only: anything else is refused where the file is made."""
    with pytest.raises(ValueError, match="'both' is not a valid FileKind"):
        _file(kind="both")


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_render_refuses_tokens_outside_the_grammar(name: str) -> None:
    exportsfile = importlib.import_module("nfs_exportd.exportsfile")
    refused = exportsfile.RenderRefused
    with pytest.raises(refused) as info:
        exportsfile.render(BAD_FILES[name])
    msg = str(info.value)
    assert msg.startswith("refusing to write ") and "this is a bug" in msg.lower()
    assert "please report" in msg and "\n" not in msg
    assert refused.exit_code == 1


def test_render_accepts_what_decide_writes() -> None:
    from nfs_exportd.exportsfile import parse, render

    f = ExportsFile(
        "public-scratch.exports",
        "public",
        "scratch",
        (
            ExportLine("/srv/scratch", "rw,sync,sec=sys", ("172.16.0.0/21", "fd00::/64")),
            ExportLine("/srv/x", "ro", ("172.16.0.5", "fd00::5")),
        ),
    )
    text = render(f)
    assert parse(f.filename, text) == f


def test_a_refused_render_writes_nothing_and_runs_no_exportfs(good: tuple[Lab, Snapshot]) -> None:
    """The refusal stops the whole apply before any file is written: a good file that
    changes in the same apply is not written either (no partial state)."""
    exportsfile = importlib.import_module("nfs_exportd.exportsfile")
    from nfs_exportd.config import load_config
    from nfs_exportd.cycle import backend_for
    from nfs_exportd.read.exportsdir import scan

    lab, before = good
    cfg = load_config(lab.config_path)
    current = scan(lab.exports_dir)
    tools = current.managed["tools.exports"]
    grown = ExportsFile(
        tools.filename,
        "project",
        "tools",
        (ExportLine(tools.lines[0].path, tools.lines[0].options, ("172.16.0.5", "172.16.0.9")),),
    )
    bad = _file(owner="zz", path=lab.srv("zz", "home"), clients=("fe80::1%x *(rw)",))
    calls = lab.root / "exportfs-calls"
    wrapper = lab.root / "exportfs-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {SANDBOX} {lab.root / "sb"} "$@"\n')
    wrapper.chmod(0o755)
    backend = backend_for(cfg)
    backend.command = [str(wrapper)]
    with pytest.raises(exportsfile.RenderRefused):
        backend.apply({**current.managed, "tools.exports": grown, "zz.exports": bad}, current.raw)
    assert snapshot(lab) == before
    assert not calls.exists(), "exportfs ran"
    assert sorted(os.listdir(lab.exports_dir)) == sorted(before[1])  # no temporaries either


def test_bad_options_in_a_managed_file_name_file_and_line(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """A managed file in force whose option list is not one nfs-exportd writes: the cycle
    stops naming file:line when the file is read (not a 'bug' refusal when rendering),
    and nothing in force changes."""
    p = lab.srv("a", "home")
    lab.add_project("a", 1000, {"home": p})
    lab.add_instance("a1", "a", "10.0.0.5")
    assert lab.cli("sync") == 0
    f = lab.exports_dir / "a.exports"
    f.write_text(f.read_text().replace(" -", " -fsid=0x(1),", 1))
    before = snapshot(lab)
    capsys.readouterr()
    assert lab.cli("sync") != 0
    err = capsys.readouterr().err
    assert "a.exports:" in err and "options" in err and "bug in nfs-exportd" not in err, err
    assert snapshot(lab) == before


def test_trunk_subport_reuse_leaves_old_project_at_once(world: World) -> None:  # noqa: F811
    """tools-2 is deleted; its address T2 is now on a trunk subport of paws (Neutron:
    device_owner trunk:subport, device_id the trunk's id): paws sends from T2, which
    leaves tools's exports in this cycle (ip-conflict), not after confirmations."""
    w = world
    assert w.sync() == 0
    w.sim.delete_server("tools-2")
    paws = w.sim.project_id("paws")
    subport = {
        "id": "subport-1", "device_id": "trunk-0001", "device_owner": "trunk:subport",
        "project_id": paws, "tenant_id": paws, "fixed_ips": [{"ip_address": T2}],
    }  # fmt: skip
    ports = [*w.sim.state.region_ports(R1), subport]
    w.sim.add_fault(service="network", region=R1, path_regex="ports", status=200,
                    body={"ports": ports})  # fmt: skip
    w.sync()
    tools_home = w.paths["tools"][0]
    assert (tools_home, T2) not in w.lab.in_force(), "T2 is on paws's VM, still exported to tools"
