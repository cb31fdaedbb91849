"""The exportfs backend's read-back after a change, with the real exportfs: apply writes
only the files whose text changes, but the read-back still covers every pair of every
file of ours (one dropped behind our back from a file not rewritten fails the apply),
and a pair the change removes that is still in force fails it too.  Something else
acting on exportfs right after our reload stands in for a kernel or a tool that does
not do what the files say."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conftest import SANDBOX, Lab
from nfs_exportd.apply.exportfs import ExportfsBackend
from nfs_exportd.errors import ApplyError
from nfs_exportd.exportsfile import parse
from nfs_exportd.memory import state
from nfs_exportd.model import ExportLine
from nfs_exportd.read.exportsdir import scan

OPTS = "rw,sync,no_subtree_check,root_squash"


def baseline(lab: Lab) -> tuple[str, str]:
    """Two projects synced: tools (two instances) and docs (one). (tools home, docs home)"""
    lab.add_project("tools", 50380)
    lab.add_project("docs", 50381)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    lab.add_instance("i-3", "docs", "172.16.0.9")
    assert lab.cli("sync") == 0
    return lab.srv("tools", "home"), lab.srv("docs", "home")


def backend(lab: Lab, tmp_path: Path, after_reload: str) -> ExportfsBackend:
    """The backend as sync builds it, its command the real exportfs followed by
    ``after_reload`` (another exportfs call) whenever it reloads."""
    sb = lab.root / "sb"
    wrapper = tmp_path / "exportfs-then"
    wrapper.write_text(
        "#!/bin/sh\n"
        + textwrap.dedent(
            f"""\
            "{SANDBOX}" "{sb}" "$@" || exit $?
            if [ "$1" = "-ra" ]; then "{SANDBOX}" "{sb}" {after_reload}; fi
            """
        )
    )
    wrapper.chmod(0o755)
    return ExportfsBackend(
        lab.exports_dir,
        [str(wrapper)],
        60,
        lab.etab,
        pending_marker=lab.state_dir / state.APPLY_PENDING,
        last_verified=lambda: state.load_verified(lab.state_dir),
    )


def test_a_removed_pair_still_in_force_fails_the_apply(lab: Lab, tmp_path: Path) -> None:
    tools, _ = baseline(lab)
    in_force = lab.in_force()
    current = scan(lab.exports_dir)
    f = current.managed["tools.exports"]
    fewer = f.__class__(
        f.filename, f.kind, f.owner, (ExportLine(tools, OPTS, ("172.16.0.5",)),), f.keystone_id
    )
    targets = {**current.managed, "tools.exports": fewer}
    # 172.16.0.6 is exported again right after the reload that dropped it
    be = backend(lab, tmp_path, f"-i -o {OPTS} 172.16.0.6:{tools}")
    with pytest.raises(ApplyError, match=r"172\.16\.0\.6 -> .* is still in force"):
        be.apply(targets, current.raw)
    assert lab.in_force() == in_force  # undone: the verified files are back
    assert lab.files() == current.raw


def test_a_pair_dropped_from_a_file_not_rewritten_fails_the_apply(lab: Lab, tmp_path: Path) -> None:
    tools, docs = baseline(lab)
    current = scan(lab.exports_dir)
    more = lab.files()["tools.exports"].replace("172.16.0.6", "172.16.0.6 172.16.0.7")
    targets = {**current.managed, "tools.exports": parse("tools.exports", more)}
    # docs.exports is not rewritten; its pair is taken away right after the reload
    be = backend(lab, tmp_path, f"-u 172.16.0.9:{docs}")
    with pytest.raises(ApplyError, match=r"docs\.exports: 172\.16\.0\.9 -> .* is not in force"):
        be.apply(targets, current.raw)
    assert lab.files() == current.raw
    assert (tools, "172.16.0.7") not in lab.in_force()
