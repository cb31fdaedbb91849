"""The projects file: a realistic 40+ project file, text-only host matching, and every
rejection (issue 2, point 3), each through the CLI with the exports in force unchanged."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import HOST, Lab
from nfs_exportd.config import ExportOptionsConfig
from nfs_exportd.errors import ConfigError
from nfs_exportd.read.projects import load_projects, parse_projects, served_exports
from nfs_exportd.validate import normalise_path

DATA = Path(__file__).parent / "data" / "projects.yaml"
OPTS = ExportOptionsConfig()

# Written by hand from tests/data/projects.yaml: what nfs-1.svc.example serves.
NFS1_PROJECTS = {
    "cloudinfra": {"home", "project"},
    "deployment-prep": {"home", "project"},
    "quarry": {"home", "project"},
    "huggle": {"home", "project"},
    "testlabs": {"home", "project"},
    "wikidumpparse": {"project"},
    "wikidata-query": {"home", "project"},
    "wikidata-dev": {"home", "project"},
    "math": {"home", "project", "scratch"},
    "video": {"home", "project"},
    "editor-engagement": {"home", "project"},
    "ores": {"home", "project"},
    "mwoffliner": {"home", "project"},
    "osmit": {"home", "project"},
    "cyberbot": {"home", "project"},
    "dwl": {"home", "project"},
    "sre-sandbox": {"home", "project"},
    "wikilabels": {"home", "project"},
    "globaleducation": {"home", "project"},
    "phabricator": {"home", "project"},
    "integration": {"project"},
    "twl": {"home", "project"},
    "utrs": {"home", "project"},
    "wikisource-dev": {"home", "project"},
    "shiny-r": {"home", "project"},
    "search": {"home", "project"},
    "language": {"home", "project"},
    "mediawiki-vagrant": {"home", "project"},
}


# --------------------------------------------------------------------------- pure parsing


def test_realistic_file_parses() -> None:
    pf = load_projects(DATA)
    assert len(pf.projects) == 47
    assert pf.projects["tools"].gid == 50380
    assert pf.projects["paws"].gid == 52771
    # gids are unique (a duplicate would have been rejected)
    assert len({p.gid for p in pf.projects.values()}) == 47


def test_realistic_file_served_by_nfs1() -> None:
    served = served_exports(load_projects(DATA), [HOST], OPTS, {}, "test")
    got = {p: {e.volume for e in exps} for p, exps in served.private.items()}
    assert got == NFS1_PROJECTS
    assert sum(len(v) for v in got.values()) == 55
    assert served.public == ()
    paths = {e.path for exps in served.private.values() for e in exps}
    assert "/srv/misc/shared/quarry/project" in paths  # trailing '/' normalised
    assert "/srv/misc/shared/testlabs/home" in paths  # '//' normalised
    assert "/srv/misc/shared/deployment-prep/home" in paths
    assert all(e.options == OPTS.default for exps in served.private.values() for e in exps)


def test_realistic_file_per_project_service_names_and_mount_names() -> None:
    pf = load_projects(DATA)
    served = served_exports(pf, ["tools-nfs.svc.tools.example"], OPTS, {}, "test")
    assert list(served.private) == ["tools"]
    assert {(e.volume, e.path) for e in served.private["tools"]} == {
        ("tools-home", "/srv/tools/home"),
        ("tools-project", "/srv/tools/project"),
    }
    served = served_exports(pf, ["toolsbeta-nfs.svc.toolsbeta.example"], OPTS, {}, "test")
    assert {(e.volume, e.path) for e in served.private["toolsbeta"]} == {
        ("toolsbeta-home", "/srv/toolsbeta/home"),
        ("toolsbeta-project", "/srv/toolsbeta/project"),
    }
    served = served_exports(pf, ["nfs-2.svc.example"], OPTS, {}, "test")
    assert len(served.private) == 13
    assert {e.volume for e in served.private["bastion"]} == {"home"}
    # both shared servers at once: no path conflicts across hosts in the realistic file
    both = served_exports(pf, [HOST, "nfs-2.svc.example"], OPTS, {}, "test")
    assert len(both.private) == 41


def test_normalised_paths_warn_naming_project_and_mount() -> None:
    pf = load_projects(DATA)
    assert len(pf.warnings) == 4
    text = "\n".join(pf.warnings)
    for project, mount, raw in [
        ("testlabs", "home", "/srv/misc/shared//testlabs/home"),
        ("deployment-prep", "home", "/srv/misc/shared/deployment-prep//home"),
        ("quarry", "project", "/srv/misc/shared/quarry/project/"),
        ("toolsbeta", "toolsbeta-home", "/srv/toolsbeta/home/"),
    ]:
        line = next(w for w in pf.warnings if f"project {project!r}" in w)
        assert f"mount {mount!r}" in line
        assert repr(raw) in line
        assert str(DATA) in line
    assert "normalised" in text


def test_true_volumes_are_skipped() -> None:
    pf = load_projects(DATA)
    for name in ("tools", "toolsbeta", "paws", "maps", "quarry", "deployment-prep"):
        assert pf.projects[name].skipped == ("dumps",)
        assert all(m.volume != "dumps" for m in pf.projects[name].mounts)
    # projects with only `dumps: true` parse, and nothing of theirs is served anywhere
    for name in ("wikistats", "commonsarchive"):
        assert pf.projects[name].mounts == ()
        assert pf.projects[name].skipped == ("dumps",)
    hosts = sorted({m.host for p in pf.projects.values() for m in p.mounts})
    served = served_exports(pf, hosts, OPTS, {}, "test")
    assert "wikistats" not in served.private
    assert all(e.volume != "dumps" for exps in served.private.values() for e in exps)


def test_false_is_not_true() -> None:
    with pytest.raises(ConfigError, match=r"project 'tools': mount 'dumps'"):
        parse_projects({"tools": {"gid": 1, "mounts": {"dumps": False}}}, "p.yaml")


def test_host_match_is_text_only(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_dns(monkeypatch, calls := [])
    pf = parse_projects(
        {
            "a": {"gid": 1, "mounts": {"home": "NFS-1.svc.example.:/srv/a/home"}},
            "b": {"gid": 2, "mounts": {"home": "nfs-1:/srv/b/home"}},  # short name
            "c": {"gid": 3, "mounts": {"home": "198.51.100.7:/srv/c/home"}},  # an address
            "d": {"gid": 4, "mounts": {"home": "nfs-1.svc.example.org:/srv/d/home"}},
        },
        "p.yaml",
    )
    served = served_exports(pf, [HOST], OPTS, {}, "test")
    # case and a trailing dot are spelling, not identity; nothing else matches
    assert list(served.private) == ["a"]
    assert calls == []


# --------------------------------------------------------------------------- in the lab


def _forbid_dns(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    def boom(name: str) -> Any:
        def fn(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{name}{args!r}")
            raise socket.gaierror(socket.EAI_FAIL, "DNS is forbidden in this test")

        return fn

    for name in (
        "getaddrinfo",
        "gethostbyname",
        "gethostbyname_ex",
        "gethostbyaddr",
        "getnameinfo",
        "getfqdn",
    ):
        monkeypatch.setattr(socket, name, boom(name))


def _load_realistic(lab: Lab) -> dict[str, list[str]]:
    """Put the realistic file into the lab, with /srv/ moved under the lab root.

    Returns project -> normalised served paths on nfs-1 (the directories are created)."""
    data = yaml.safe_load(DATA.read_text())
    srv = str(lab.root) + "/srv/"
    served: dict[str, list[str]] = {}
    for name, body in data.items():
        for vol, target in body["mounts"].items():
            if target is True:
                continue
            host, _, path = target.partition(":")
            assert path.startswith("/srv/")
            path = srv + path[len("/srv/") :]
            body["mounts"][vol] = f"{host}:{path}"
            if host == HOST:
                norm, _ = normalise_path(path)
                Path(norm).mkdir(parents=True, exist_ok=True)
                served.setdefault(name, []).append(norm)
        lab.inventory["projects"].append({"id": f"id-{name}", "name": name, "enabled": True})
    lab.projects = data
    return served


def _realistic_instances(lab: Lab, projects: list[str]) -> dict[str, set[str]]:
    ips: dict[str, set[str]] = {}
    for i, name in enumerate(sorted(projects)):
        addrs = [f"172.16.{i}.{n}" for n in range(10, 10 + 1 + i % 3)]
        if i % 5 == 0:
            addrs.append(f"fd00::{i + 1:x}:a")
        for n, a in enumerate(addrs):
            lab.add_instance(f"i-{name}-{n}", name, a)
        ips[name] = set(addrs)
    return ips


def test_realistic_file_sync_in_the_lab(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    served = _load_realistic(lab)
    ips = _realistic_instances(lab, list(served))
    assert lab.cli("sync") == 0
    err = capsys.readouterr().err
    # the normalisation warnings are logged and name project and mount
    assert "project 'testlabs': mount 'home'" in err
    assert "project 'quarry': mount 'project'" in err
    files = lab.files()
    assert set(files) == {f"{p}.exports" for p in NFS1_PROJECTS}
    want = {(path, ip) for p, paths in served.items() for path in paths for ip in ips[p]}
    assert lab.in_force() == want
    assert len(want) > 100
    # the rendered files carry normalised paths only
    text = "".join(files.values())
    assert "//" not in text
    assert "/project/ " not in text
    # projects on other servers got no file
    assert "paws.exports" not in files and "tools.exports" not in files


def test_no_dns_anywhere_in_plan_and_sync(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = _load_realistic(lab)
    _realistic_instances(lab, list(served))
    calls: list[str] = []
    _forbid_dns(monkeypatch, calls)
    assert lab.cli("plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["holds"] == []
    assert len(plan["changes"]) > 100
    assert lab.cli("sync") == 0
    assert lab.cli("sync") == 0  # and a no-change cycle
    assert lab.cli("status") == 0
    assert calls == []


def test_plan_with_paths_that_do_not_exist_only_holds_them(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unmodified file (paths under the real /srv) plans fine: missing paths are holds."""
    lab.projects = yaml.safe_load(DATA.read_text())
    lab.config["serve"]["roots"] = ["/srv"]  # the file's paths (the default root)
    for name in lab.projects:
        lab.inventory["projects"].append({"id": f"id-{name}", "name": name, "enabled": True})
    lab.add_instance("i-1", "huggle", "172.16.3.4")
    lab.add_instance("i-2", "math", "172.16.3.5")
    missing = [p for p in ("/srv/misc/shared/huggle/home",) if Path(p).exists()]
    if missing:
        pytest.skip("this machine has /srv/misc/shared")
    assert lab.cli("plan", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["changes"] == []
    holds = {(h["project"], h["path"], h["client"], h["reason"]) for h in plan["holds"]}
    assert holds == {
        ("huggle", "/srv/misc/shared/huggle/home", "172.16.3.4", "path-missing"),
        ("huggle", "/srv/misc/shared/huggle/project", "172.16.3.4", "path-missing"),
        ("math", "/srv/misc/shared/math/home", "172.16.3.5", "path-missing"),
        ("math", "/srv/misc/shared/math/project", "172.16.3.5", "path-missing"),
        ("math", "/srv/misc/shared/math/scratch", "172.16.3.5", "path-missing"),
    }


# --------------------------------------------------------------------------- rejections


# lab root -> (pairs in force, managed files) after the last good sync
BASELINE: dict[Path, tuple[set[tuple[str, str]], dict[str, str]]] = {}


@pytest.fixture
def good(lab: Lab) -> Lab:
    """A lab after a good sync, with changes pending that a bad file must not let through:
    a new instance (would be added) and a gone one (would be removed: 1 confirmation)."""
    lab.config["safety"] = {
        "removal_confirmations": 1,
        "max_removal_fraction": 1.0,
        "min_removal_count": 0,
    }
    lab.add_project("tools", 50380, {"home": lab.srv("tools", "home")})
    lab.add_project("paws", 52771, {"home": lab.srv("paws", "home")})
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    lab.add_instance("i-3", "paws", "172.16.1.5")
    assert lab.cli("sync") == 0
    BASELINE[lab.root] = (lab.in_force(), lab.files())
    assert len(BASELINE[lab.root][0]) == 3
    lab.remove_instance("i-2")
    lab.add_instance("i-4", "tools", "172.16.0.7")
    return lab


def _rejected(lab: Lab, capsys: pytest.CaptureFixture[str], *names: str) -> str:
    capsys.readouterr()
    assert lab.cli("sync") == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err, f"{name!r} not named in: {err}"
    assert str(lab.root / "projects.yaml") in err
    assert (lab.in_force(), lab.files()) == BASELINE[lab.root]
    assert lab.cli("plan") == 2  # plan says the same
    assert (lab.in_force(), lab.files()) == BASELINE[lab.root]
    return err


BAD_NAMES = [
    "tools/evil",
    "..",
    "a..b",
    "has space",
    "tab\there",
    "new\nline",
    "trailing-newline\n",
    "paren(",
    "paren)",
    "hash#",
    "star*",
    'quote"',
    "caf\u00e9",
    "\u0442\u043e\u043e\u043b\u0441",  # Cyrillic look-alike of "toolc"
    " leading-space",
    "",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_project_name(good: Lab, capsys: pytest.CaptureFixture[str], name: str) -> None:
    good.projects[name] = {"gid": 60001, "mounts": {"home": f"{HOST}:{good.srv('evil', 'h')}"}}
    _rejected(good, capsys, f"project {name!r}")


@pytest.mark.parametrize("name", ["home dir", "home/..", "home\n", "h\u00f6me", "home#"], ids=repr)
def test_bad_volume_name(good: Lab, capsys: pytest.CaptureFixture[str], name: str) -> None:
    good.projects["tools"]["mounts"][name] = f"{HOST}:{good.srv('tools', 'other')}"
    _rejected(good, capsys, "project 'tools'", f"mount {name!r}")


BAD_PATHS = [
    "/with space",
    "/with\ttab",
    "/new\nline",
    "/trailing-newline\n",
    "/paren(rw)",
    "/paren)",
    "/hash#",
    "/star*",
    '/quote"',
    "/caf\u00e9",
    "/dot/../dot",
    "/dot/./dot",
    "/back\\slash",
]


@pytest.mark.parametrize("suffix", BAD_PATHS, ids=repr)
def test_bad_path(good: Lab, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    path = f"{good.root}/srv/paws{suffix}"
    Path(path).mkdir(parents=True, exist_ok=True)  # it exists: only validation stops it
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:{path}"
    _rejected(good, capsys, "project 'paws'", "mount 'project'")


@pytest.mark.parametrize("path", ["srv/paws/project", "./srv/paws", "", "~/paws"], ids=repr)
def test_relative_path(good: Lab, capsys: pytest.CaptureFixture[str], path: str) -> None:
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:{path}"
    _rejected(good, capsys, "project 'paws'", "mount 'project'")


def test_exports_world_by_path_space_options_is_rejected(
    good: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """`PATH (opts)` with a space exports to the world: such a path never reaches a file."""
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:{good.srv('paws')} (rw)"
    _rejected(good, capsys, "project 'paws'", "mount 'project'")


def test_duplicate_gid_names_both_projects(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    good.projects["paws"]["gid"] = 50380
    err = _rejected(good, capsys, "tools", "paws", "50380")
    assert "duplicate gid" in err


def test_duplicate_gid_across_many_projects(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    good.projects["quarry"] = {"gid": 52771, "mounts": {"dumps": True}}
    good.projects["maps"] = {"gid": 52771, "mounts": {}}
    err = _rejected(good, capsys, "paws", "quarry", "maps", "52771")
    assert "tools" not in err.split("duplicate gid")[1].splitlines()[0]


def test_same_path_for_two_projects(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    good.projects["paws"]["mounts"]["project"] = good.projects["tools"]["mounts"]["home"]
    err = _rejected(good, capsys, "'tools'", "'paws'")
    assert "same path" in err


def test_same_path_after_normalisation(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    home = good.srv("tools", "home")
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:{home.replace('/srv/', '/srv//')}/"
    _rejected(good, capsys, "'tools'", "'paws'")


def test_path_inside_another_projects_path(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:{good.srv('tools', 'home', 'paws')}"
    err = _rejected(good, capsys, "'tools'", "'paws'")
    assert "inside another project's path" in err


def test_path_containing_another_projects_path(
    good: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:{good.srv('tools')}"
    _rejected(good, capsys, "'tools'", "'paws'")


def test_path_inside_another_with_a_sibling_sorting_between(
    good: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    """/srv/tools-static sorts between /srv/tools and /srv/tools/evil ('-' < '/'):
    the nesting of evil inside tools must still be found."""
    good.projects["tools"]["mounts"]["home"] = f"{HOST}:{good.srv('tools')}"
    good.projects["tools-static"] = {
        "gid": 50999,
        "mounts": {"home": f"{HOST}:{good.srv('tools-static')}"},
    }
    good.projects["evil"] = {"gid": 51000, "mounts": {"home": f"{HOST}:{good.srv('tools', 'x')}"}}
    good.inventory["projects"].append({"id": "id-ts", "name": "tools-static", "enabled": True})
    good.inventory["projects"].append({"id": "id-evil", "name": "evil", "enabled": True})
    _rejected(good, capsys, "'tools'", "'evil'")


def test_nesting_on_another_host_is_not_this_servers_conflict(lab: Lab) -> None:
    """Same path on two different servers is two different exports."""
    pf = parse_projects(
        {
            "a": {"gid": 1, "mounts": {"home": f"{HOST}:/srv/x"}},
            "b": {"gid": 2, "mounts": {"home": "nfs-2.svc.example:/srv/x"}},
        },
        "p.yaml",
    )
    assert set(served_exports(pf, [HOST], OPTS, {}, "t").private) == {"a"}
    # ... but serving both hosts at once makes it a conflict on this server
    with pytest.raises(ConfigError, match=r"'a' and 'b'"):
        served_exports(pf, [HOST, "nfs-2.svc.example"], OPTS, {}, "t")


@pytest.mark.parametrize(
    ("body", "culprit"),
    [
        ({"gid": "50999", "mounts": {}}, "gid"),
        ({"gid": -1, "mounts": {}}, "gid"),
        ({"gid": True, "mounts": {}}, "gid"),
        ({"mounts": {}}, "gid"),
        ({"gid": 50999, "mounts": ["home"]}, "mounts"),
        ({"gid": 50999, "mounts": {}, "mount": {}}, "mount"),
        ({"gid": 50999, "mounts": {"home": "/srv/no-host"}}, "home"),
        ({"gid": 50999, "mounts": {"home": "bad host:/srv/x"}}, "home"),
        ({"gid": 50999, "mounts": {"home": 17}}, "home"),
        ("not a mapping", "newproj"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_malformed_project(
    good: Lab, capsys: pytest.CaptureFixture[str], body: Any, culprit: str
) -> None:
    good.projects["newproj"] = body
    _rejected(good, capsys, "project 'newproj'", culprit)


def test_projects_file_not_a_mapping(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _rejected_raw(good, capsys, "- tools\n- paws\n", "mapping")


def test_projects_file_invalid_yaml(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _rejected_raw(good, capsys, "tools:\n  gid: [50380\n", "not valid YAML")


def test_projects_file_invalid_utf8(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _rejected_raw(good, capsys, b"tools:\n  gid: 5\xff\n", "cannot read")


def _rejected_raw(
    lab: Lab, capsys: pytest.CaptureFixture[str], content: str | bytes, what: str
) -> None:
    """Write the projects file by hand (lab.cli would rewrite it), then sync."""
    from nfs_exportd.cli import main

    lab.write()
    pf = lab.root / "projects.yaml"
    if isinstance(content, bytes):
        pf.write_bytes(content)
    else:
        pf.write_text(content)
    capsys.readouterr()
    args = ["--config", str(lab.config_path), "--allow-root"]
    assert main([*args, "sync"]) == 2
    err = capsys.readouterr().err
    assert str(pf) in err and what in err, err
    assert (lab.in_force(), lab.files()) == BASELINE[lab.root]
    assert main([*args, "plan"]) == 2
    assert (lab.in_force(), lab.files()) == BASELINE[lab.root]


def test_all_errors_reported_at_once(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """An operator fixing the file sees every bad project, not one per attempt."""
    good.projects["bad one"] = {"gid": 1, "mounts": {}}
    good.projects["bad#two"] = {"gid": 2, "mounts": {}}
    good.projects["paws"]["mounts"]["project"] = f"{HOST}:relative/path"
    _rejected(good, capsys, "'bad one'", "'bad#two'", "project 'paws'")


def test_good_file_after_bad_applies(good: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """Control: the pending changes do apply once the file is valid again."""
    good.projects["bad one"] = {"gid": 1, "mounts": {}}
    _rejected(good, capsys, "'bad one'")
    del good.projects["bad one"]
    assert good.cli("sync") == 0
    home = good.srv("tools", "home")
    assert good.in_force() == {
        (home, "172.16.0.5"),
        (home, "172.16.0.7"),
        (good.srv("paws", "home"), "172.16.1.5"),
    }


def test_the_original_generated_nfs_mounts_yaml_is_read_as_its_private_part() -> None:
    """Migration: the original daemon's /etc/nfs-mounts.yaml ({public: ..., private:
    projects}) gives the same projects as the human-edited projects.yaml; its public
    entries (exports lines) are not taken over silently: a warning says where they go."""
    data = yaml.safe_load((Path(__file__).parent / "data" / "projects.yaml").read_text())
    plain = parse_projects(data, "projects.yaml")
    generated = {
        "public": {"scratch": "/srv/scratch *(rw,sec=sys,sync,no_subtree_check,root_squash)"},
        "private": data,
    }
    got = parse_projects(generated, "/etc/nfs-mounts.yaml")
    assert got.projects == plain.projects
    assert any("public_exports" in w and "scratch" in w for w in got.warnings)
    # without a public part there is nothing to warn about
    assert parse_projects({"private": data}, "projects.yaml").warnings == plain.warnings
    # but projects really named public and private are still projects
    real = {"private": {"gid": 5, "mounts": {}}, "public": {"gid": 6, "mounts": {}}}
    assert set(parse_projects(real, "x").projects) == {"private", "public"}
