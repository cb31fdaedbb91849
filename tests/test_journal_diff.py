"""The journal's pair diff between two complete sets of files: files with the same
text on both sides are skipped (not parsed), and the result is the same as when every
file is compared."""

from __future__ import annotations

from nfs_exportd.memory.journal import pair_diff

H = "# nfs-exportd managed file, do not edit: "
A = f"{H}project=a\n/srv/a -rw 192.0.2.1 192.0.2.2\n"
A2 = f"{H}project=a\n/srv/a -rw 192.0.2.1 192.0.2.3\n/srv/a2 -ro 192.0.2.1\n"
A3 = f"{H}project=a\n/srv/a -ro 192.0.2.1 192.0.2.3\n"
B = f"{H}project=b\n/srv/b -rw 192.0.2.9\n"
P = f"{H}public=scratch\n/srv/s -rw 198.51.100.0/24\n"


def test_only_what_differs_is_reported() -> None:
    before = {"a.exports": A, "b.exports": B, "public-scratch.exports": P}
    after = {"a.exports": A2, "b.exports": B}
    added, removed, updated = pair_diff(before, after)
    assert added == {("a", "/srv/a", "192.0.2.3"), ("a", "/srv/a2", "192.0.2.1")}
    assert removed == {
        ("a", "/srv/a", "192.0.2.2"),
        ("public:scratch", "/srv/s", "198.51.100.0/24"),
    }
    assert updated == set()


def test_options_changed_and_new_files() -> None:
    added, removed, updated = pair_diff({"a.exports": A2}, {"a.exports": A3, "b.exports": B})
    assert added == {("b", "/srv/b", "192.0.2.9")}
    assert removed == {("a", "/srv/a2", "192.0.2.1")}
    assert updated == {("a", "/srv/a", "192.0.2.1"), ("a", "/srv/a", "192.0.2.3")}


def test_the_same_files_differ_in_nothing() -> None:
    files = {"a.exports": A, "b.exports": B}
    assert pair_diff(files, dict(files)) == (set(), set(), set())
