"""The last verified copy in state_dir: ``verified_matches`` says whether it holds exactly
the given files (a no-change cycle keeps it instead of rewriting it), and
``save_verified`` writes only the files that differ, never leaving an unfinished copy
that looks whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nfs_exportd.memory import state

A = "# nfs-exportd managed file, do not edit: project=a\n/srv/a -rw 192.0.2.1\n"
B = "# nfs-exportd managed file, do not edit: project=b\n/srv/b -rw 192.0.2.2\n"
C = "# nfs-exportd managed file, do not edit: project=c\n/srv/c -rw 192.0.2.3\n"
FILES = {"a.exports": A, "b.exports": B}


def vdir(tmp_path: Path) -> Path:
    return tmp_path / state.VERIFIED


def test_a_saved_copy_matches_exactly_its_files(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    assert state.verified_matches(tmp_path, FILES)
    assert state.load_verified(tmp_path) == FILES


@pytest.mark.parametrize(
    "files",
    [
        {"a.exports": A},  # one file fewer
        {**FILES, "c.exports": C},  # one file more
        {"a.exports": A, "b.exports": B + "/srv/c -rw 192.0.2.3\n"},  # a text differs
        {"a.exports": A, "c.exports": C},  # same count, another name
        {},
    ],
)
def test_any_difference_is_no_match(tmp_path: Path, files: dict[str, str]) -> None:
    state.save_verified(tmp_path, FILES)
    assert not state.verified_matches(tmp_path, files)


def test_an_unfinished_copy_never_matches(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    os.unlink(vdir(tmp_path) / state.VERIFIED_COMPLETE)
    assert not state.verified_matches(tmp_path, FILES)
    assert state.load_verified(tmp_path) is None


def test_no_copy_never_matches(tmp_path: Path) -> None:
    assert not state.verified_matches(tmp_path, {})
    assert not state.verified_matches(tmp_path, FILES)


def test_a_file_edited_in_the_copy_is_no_match(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    (vdir(tmp_path) / "b.exports").write_text(B.replace("192.0.2.2", "*"))
    assert not state.verified_matches(tmp_path, FILES)


def test_dot_files_are_not_part_of_the_copy(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    (vdir(tmp_path) / ".nfs-exportd.tmp").write_text("partial")
    assert state.verified_matches(tmp_path, FILES)


def test_save_writes_only_what_differs(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    d = vdir(tmp_path)
    a_ino = (d / "a.exports").stat().st_ino  # atomic_write replaces: a new inode
    complete_ino = (d / state.VERIFIED_COMPLETE).stat().st_ino
    state.save_verified(tmp_path, FILES)  # the same: nothing touched
    assert (d / "a.exports").stat().st_ino == a_ino
    assert (d / state.VERIFIED_COMPLETE).stat().st_ino == complete_ino
    b2 = B + "/srv/c -rw 192.0.2.3\n"
    state.save_verified(tmp_path, {"a.exports": A, "b.exports": b2, "c.exports": C})
    assert (d / "a.exports").stat().st_ino == a_ino
    assert state.load_verified(tmp_path) == {"a.exports": A, "b.exports": b2, "c.exports": C}
    state.save_verified(tmp_path, {"c.exports": C})  # stale files go
    assert state.load_verified(tmp_path) == {"c.exports": C}
    assert sorted(os.listdir(d)) == [state.VERIFIED_COMPLETE, "c.exports"]


def test_save_repairs_a_copy_edited_or_unfinished(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    d = vdir(tmp_path)
    (d / "a.exports").write_text("edited")
    os.unlink(d / state.VERIFIED_COMPLETE)
    state.save_verified(tmp_path, FILES)
    assert state.verified_matches(tmp_path, FILES)
    assert state.load_verified(tmp_path) == FILES


def test_save_finishes_a_copy_left_unfinished_with_the_same_files(tmp_path: Path) -> None:
    state.save_verified(tmp_path, FILES)
    os.unlink(vdir(tmp_path) / state.VERIFIED_COMPLETE)  # a crash before the last step
    state.save_verified(tmp_path, FILES)
    assert state.load_verified(tmp_path) == FILES
