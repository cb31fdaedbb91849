"""Adversarial checks of issue 15's cuts in the exportfs cycle: each fast path against
the code it replaced (kept here as the reference), or against the required behaviour.

- ``save_verified`` writes only what differs: a crash (SIGKILL at every write step)
  never leaves a copy that looks whole but mixes two cycles;
- ``pair_diff`` parses only files whose text differs: the same answer as parsing all;
- ``ExportfsBackend._removed_pairs`` of the rewritten files only: the same pairs as of
  every file in force (a file kept as it is drops nothing, because parse(render(f))
  holds exactly f's pairs);
- ``parse_etab`` shares one option set per option text: the same mapping;
- ``client_sort_key``'s IPv4 key and ``canonical_network``: the same answers as
  ``ipaddress`` / ``parse_network`` on odd texts (unicode digits, signs, newlines...).
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nfs_exportd import addresses
from nfs_exportd.addresses import AddressError, canonical_network, parse_network
from nfs_exportd.apply.exportfs import ExportfsBackend, parse_etab
from nfs_exportd.exportsfile import ManagedFileError, parse, render
from nfs_exportd.memory import state
from nfs_exportd.memory.journal import pair_diff
from nfs_exportd.model import ExportLine, ExportsFile, FileKind, client_sort_key, sorted_clients

# ---------------------------------------------------------------- random managed files

OWNERS = ["a", "b", "c", "tools", "scratch"]
PATHS = ["/srv/a", "/srv/b", "/srv/c/d", "/srv/e-f"]
CLIENTS = ["192.0.2.1", "192.0.2.2", "192.0.2.10", "198.51.100.0/24", "2001:db8::1", "10.0.0.7"]
OPTIONS = ["rw", "ro", "rw,no_root_squash", "rw,sync"]


def random_file(rng: random.Random, owner: str, kind: FileKind) -> ExportsFile:
    lines = []
    for path in rng.sample(PATHS, rng.randint(0, 3)):
        clients = frozenset(rng.sample(CLIENTS, rng.randint(1, 3)))
        lines.append(ExportLine(path, rng.choice(OPTIONS), sorted_clients(clients)))
    lines.sort(key=lambda x: x.path)
    return ExportsFile(kind.filename(owner), kind, owner, tuple(lines))


def random_set(rng: random.Random) -> dict[str, str]:
    out: dict[str, str] = {}
    for owner in rng.sample(OWNERS, rng.randint(0, len(OWNERS))):
        kind = rng.choice([FileKind.PROJECT, FileKind.PUBLIC])
        f = random_file(rng, owner, kind)
        out[f.filename] = render(f)
    return out


def mutate(rng: random.Random, files: dict[str, str]) -> dict[str, str]:
    """Another set sharing some files with ``files`` exactly (as a cycle does)."""
    out = {n: t for n, t in files.items() if rng.random() < 0.7}
    out.update(random_set(rng) if rng.random() < 0.5 else {})
    return out


def reference_pair_diff(
    before: dict[str, str], after: dict[str, str]
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """pair_diff before issue 15: every file of both sides parsed."""

    def pairs(files: dict[str, str]) -> dict[tuple[str, str, str], str]:
        out: dict[tuple[str, str, str], str] = {}
        for name, text in files.items():
            try:
                f = parse(name, text)
            except ManagedFileError:
                continue
            if f is None:
                continue
            owner = f.owner if f.is_project else f"public:{f.owner}"
            for line in f.lines:
                for c in line.clients:
                    out[(owner, line.path, c)] = line.options
        return out

    old, new = pairs(before), pairs(after)
    return (
        set(new) - set(old),
        set(old) - set(new),
        {k for k in set(old) & set(new) if old[k] != new[k]},
    )


def test_pair_diff_skipping_equal_files_answers_as_parsing_all() -> None:
    rng = random.Random(15)
    for _ in range(400):
        before = random_set(rng)
        after = mutate(rng, before)
        # an unparsable or foreign file on both sides, or on one side only
        if rng.random() < 0.3:
            before["x.exports"] = "# nfs-exportd managed file, do not edit: project=x\nbad\n"
        if rng.random() < 0.3:
            after["y.exports"] = "/srv/y 192.0.2.1(rw)\n"
        assert pair_diff(before, after) == reference_pair_diff(before, after), (before, after)


def test_removed_pairs_of_rewritten_files_equal_those_of_every_file() -> None:
    rng = random.Random(1515)
    for _ in range(400):
        current_raw = random_set(rng)
        after = mutate(rng, current_raw)
        targets: dict[str, ExportsFile | None] = {}
        for name, text in after.items():
            targets[name] = parse(name, text)
        for name in current_raw:  # apply's targets name what goes, or leave it out
            if name not in targets and rng.random() < 0.7:
                targets[name] = None
        # what ExportfsBackend.apply computes
        new_text = {n: (render(f) if f is not None else None) for n, f in targets.items()}
        changed = {n: t for n, t in new_text.items() if t != current_raw.get(n)}
        changed = {n: t for n, t in changed.items() if not (t is None and n not in current_raw)}
        ours = {n: f for n, f in targets.items() if f is not None}
        rewritten = [*changed, *(n for n in current_raw if n not in targets)]
        fast = ExportfsBackend._removed_pairs(current_raw, ours, rewritten)
        assert fast == ExportfsBackend._removed_pairs(current_raw, ours)


# ---------------------------------------------------------------- save_verified crashes

OLD = {
    "a.exports": "# nfs-exportd managed file, do not edit: project=a\n/srv/a -rw 192.0.2.1\n",
    "b.exports": "# nfs-exportd managed file, do not edit: project=b\n/srv/b -rw 192.0.2.2\n",
    "c.exports": "# nfs-exportd managed file, do not edit: project=c\n/srv/c -rw 192.0.2.3\n",
}
NEW = {
    "a.exports": OLD["a.exports"],
    "b.exports": OLD["b.exports"].replace("192.0.2.2", "192.0.2.2 192.0.2.4"),
    "d.exports": "# nfs-exportd managed file, do not edit: project=d\n/srv/d -rw 192.0.2.5\n",
}


def _save_killed_at(state_dir: Path, files: dict[str, str], point: str) -> bool:
    """save_verified in a child killed at ``point`` (NAME:NTH); True if it was killed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.environ["NFS_EXPORTD_KILL_AT"] = point
            state.save_verified(state_dir, files)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize(
    "point", [f"{step}:{n}" for step in ("write", "fsync", "rename", "dirsync") for n in (1, 2)]
)
def test_a_save_killed_at_any_step_is_never_taken_for_a_whole_copy(
    tmp_path: Path, point: str
) -> None:
    state.save_verified(tmp_path, OLD)
    killed = _save_killed_at(tmp_path, NEW, point)
    got = state.load_verified(tmp_path)
    if killed:
        # an unfinished copy (OLD and NEW mixed) is never whole
        assert got is None
        assert not state.verified_matches(tmp_path, NEW)
        assert not state.verified_matches(tmp_path, OLD)
    else:  # fewer write steps than NTH: it finished
        assert got == NEW
    state.save_verified(tmp_path, NEW)  # the next save finishes it
    assert state.load_verified(tmp_path) == NEW
    assert state.verified_matches(tmp_path, NEW)


def test_a_save_with_nothing_to_write_still_marks_an_unfinished_copy_only_at_the_end(
    tmp_path: Path,
) -> None:
    """The unfinished copy already holds NEW's texts (a crash after the last rename):
    the save writes nothing, but only the marker makes it whole."""
    state.save_verified(tmp_path, OLD)
    assert _save_killed_at(tmp_path, NEW, "dirsync:2")  # after b and d, before stale c goes
    assert state.load_verified(tmp_path) is None
    state.save_verified(tmp_path, NEW)
    assert sorted(os.listdir(tmp_path / state.VERIFIED)) == [
        state.VERIFIED_COMPLETE,
        "a.exports",
        "b.exports",
        "d.exports",
    ]


def test_a_same_length_edit_in_the_copy_is_rewritten(tmp_path: Path) -> None:
    """_differs compares the bytes, not the size or mtime: a same-size edit with its
    mtime put back is seen and rewritten."""
    state.save_verified(tmp_path, OLD)
    p = tmp_path / state.VERIFIED / "a.exports"
    st0 = p.stat()
    p.write_text(OLD["a.exports"].replace("192.0.2.1", "192.0.2.9"))
    os.utime(p, ns=(st0.st_atime_ns, st0.st_mtime_ns))
    assert not state.verified_matches(tmp_path, OLD)
    state.save_verified(tmp_path, OLD)
    assert state.load_verified(tmp_path) == OLD


# ---------------------------------------------------------------- parse_etab, keys, texts


def reference_parse_etab(text: str) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], frozenset[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        path, _, rest = line.rpartition("\t")
        client, _, opts = rest.partition("(")
        path = path.strip().replace("\\040", " ")
        out[(path, client.strip())] = frozenset(opts.rstrip(")").split(","))
    return out


def test_parse_etab_shared_option_sets_equal_per_line_sets() -> None:
    rng = random.Random(7)
    opts = ["rw,sync,wdelay", "ro,sync", "rw,sync,wdelay)", "", "rw,,x", "rw)(", "rw"]
    lines = []
    for i in range(2000):
        path = rng.choice(["/srv/a", "/srv/e\\040f", " /srv/b ", "/srv/\t/c"])
        client = rng.choice(["192.0.2.1", " 192.0.2.2", "198.51.100.0/24", "*", ""])
        sep = rng.choice(["(", "", "(("])
        lines.append(f"{path}\t{client}{sep}{rng.choice(opts)}" + ("" if i % 7 else "\n"))
    text = "\n".join(lines)
    assert parse_etab(text) == reference_parse_etab(text)


def reference_sort_key(client: str) -> tuple[int, int, str]:
    try:
        net = ipaddress.ip_network(client, strict=False)
    except ValueError:
        return (9, 0, client)
    single = net.prefixlen == net.max_prefixlen
    return (net.version, 0 if single else 1, f"{int(net.network_address):040d}/{net.prefixlen:03d}")


QUADISH = st.text(alphabet="0123456789./:af \n\t+-_\u0661\u0969\uff11", max_size=20)


@settings(max_examples=3000, deadline=None)
@given(QUADISH)
def test_client_sort_key_equals_ipaddress_on_odd_texts(text: str) -> None:
    assert client_sort_key(text) == reference_sort_key(text)


@settings(max_examples=300, deadline=None)
@given(st.tuples(*[st.integers(0, 255)] * 4), st.sampled_from(["", "0", "00"]))
def test_client_sort_key_on_quads_with_and_without_leading_zeros(
    quad: tuple[int, int, int, int], pad: str
) -> None:
    text = ".".join(pad + str(n) for n in quad)
    assert client_sort_key(text) == reference_sort_key(text)


# client texts where a cached or shortened answer could differ from the reference
# (case, zeros, IPv4-mapped, host bits, a newline), then random ones of those characters;
# tests/test_adversarial15_ganesha.py uses them too
CLIENT_EXAMPLES = ("2001:DB8::1", "2001:db8::0:1", "2001:0db8::1", "192.0.2.1/32",
                   "::ffff:192.0.2.1", "198.51.100.1/24", "198.51.100.0/24", "2001:db8::/32",
                   "2001:DB8::/32", "192.0.2.1\n")  # fmt: skip


def client_texts(test: Any) -> Any:
    """``@given`` a client text, with ``CLIENT_EXAMPLES`` always tried first."""
    test = given(st.text(alphabet="0123456789abcdefABCDEF.:/%\n ", max_size=24))(test)
    for text in reversed(CLIENT_EXAMPLES):
        test = example(text)(test)
    return test


def _reference_canonical(text: object) -> str | type[AddressError]:
    try:
        return str(parse_network(text))
    except AddressError:
        return AddressError


@settings(max_examples=2000, deadline=None)
@client_texts
def test_canonical_network_is_str_of_parse_network(text: str) -> None:
    addresses.clear_caches()
    want = _reference_canonical(text)
    for _ in range(2):  # uncached, then cached
        try:
            got: str | type[AddressError] = canonical_network(text)
        except AddressError:
            got = AddressError
        assert got == want


@pytest.mark.parametrize("value", [None, 3232235777, ["192.0.2.1"], b"192.0.2.1", 1.5])
def test_canonical_network_refuses_non_strings_naming_them(value: object) -> None:
    with pytest.raises(AddressError) as fast:
        canonical_network(value)
    with pytest.raises(AddressError) as checked:
        str(parse_network(value))
    assert str(fast.value) == str(checked.value)
    assert "is not a string" in str(fast.value)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_linked_file_in_the_copy_is_replaced_by_its_own_file(tmp_path: Path, link: str) -> None:
    """Before issue 15 every save replaced every file; now a file with the same text is
    kept, which must not keep a symlink or a hard link made by hand: the verified copy
    would then change with the file it points at (an undo would return to that)."""
    state.save_verified(tmp_path, OLD)
    p = tmp_path / state.VERIFIED / "a.exports"
    other = tmp_path / "elsewhere.exports"
    other.write_text(OLD["a.exports"])
    p.unlink()
    if link == "symlink":
        p.symlink_to(other)
    else:
        os.link(other, p)
    assert not state.verified_matches(tmp_path, OLD)  # a no-change cycle saves it too
    state.save_verified(tmp_path, OLD)
    assert not p.is_symlink() and p.stat().st_nlink == 1
    other.write_text(OLD["a.exports"].replace("192.0.2.1", "192.0.2.66"))
    assert state.load_verified(tmp_path) == OLD
