"""Adversarial checks of issue 15's Ganesha caches (pure: no Ganesha, no root).

- render once: an export whose spec equals its conf file's strict parse keeps the file's
  text instead of rendering it again; that is only the old answer if every text
  ``parse_conf`` accepts is exactly ``render_conf`` of what it parses to;
- ``_PARSED`` (conf_dir parses keyed on name and text): the same text under another
  name, a file gone, a file broken after it was cached: each seen as it is now;
- the lru_caches on client strings answer as the uncached code, and ``run``'s
  ``forget_texts`` empties them too (no addresses of cycles past kept).
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from nfs_exportd import cycle
from nfs_exportd.addresses import AddressError, parse_network
from nfs_exportd.apply.ganesha import backend as gbackend
from nfs_exportd.apply.ganesha import render as grender
from nfs_exportd.apply.ganesha.backend import GaneshaBackend
from nfs_exportd.apply.ganesha.render import (
    ConfFileError,
    ExportSpec,
    blocks_of,
    parse_conf,
    render_conf,
    specs_of,
)
from nfs_exportd.config import GaneshaConfig
from nfs_exportd.errors import StateError
from nfs_exportd.exportsfile import RenderRefused, render
from nfs_exportd.model import ExportLine, ExportsFile, FileKind, sorted_clients
from test_adversarial15_exportfs import client_texts

OPTS = ["rw", "ro", "rw,no_root_squash", "rw,all_squash,anonuid=5,anongid=7", "rw,sec=sys:krb5"]
CLIENTS = ["192.0.2.1", "192.0.2.2", "198.51.100.0/24", "2001:db8::1", "10.0.0.7", "203.0.113.9"]


def random_spec(rng: random.Random, path: str = "/srv/tools/home") -> ExportSpec:
    pool = rng.sample(CLIENTS, len(CLIENTS))
    blocks = []
    for owner in rng.sample(["a", "b", "tools"], rng.randint(1, 2)):
        take, pool = pool[: rng.randint(1, 2)], pool[2:]
        kid = rng.choice([None, "9f1c"])
        line = ExportLine(path, rng.choice(OPTS), sorted_clients(frozenset(take)))
        f = ExportsFile(f"{owner}.exports", FileKind.PROJECT, owner, (line,), kid)
        blocks += blocks_of(f).values()
    return specs_of({path: blocks})[path]


def _edits(rng: random.Random, text: str) -> str:
    """A small edit of a conf text: a character dropped, doubled, swapped, replaced or
    inserted."""
    i = rng.randrange(len(text))
    op = rng.randrange(5)
    if op == 4:
        return text[:i] + rng.choice(" \t\r0;,.#") + text[i:]
    if op == 0:
        return text[:i] + text[i + 1 :]
    if op == 1:
        return text[:i] + text[i] + text[i:]
    if op == 2 and i + 1 < len(text):
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text[:i] + rng.choice(" \t\r\n0123456789;,/:#.aAZ\u00a0\ufffd") + text[i + 1 :]


def test_every_conf_text_parse_accepts_is_what_render_writes_of_its_parse(
    tmp_path: Path,
) -> None:
    """The render-once path keeps a conf file's text when its parse equals the export
    wanted; that equals the old render only if parse_conf o render_conf is the identity
    on every text parse_conf accepts (edits that still parse must re-render the same).
    A text parse accepts and render refuses (a ``..`` in a record name) never reaches
    apply: reading it in force refuses it (the cycle stops, nothing changes)."""
    rng = random.Random(2026)
    accepted = refused = 0
    for i in range(6000):
        export_id = rng.choice([1, 42, 1000, 65535])
        text = render_conf(random_spec(rng), export_id)
        for _ in range(rng.randint(1, 2)):
            text = _edits(rng, text)
        name = grender.conf_name(export_id)
        try:
            got = parse_conf(name, text)
        except ConfFileError:
            continue
        accepted += 1
        try:
            again = render_conf(got.spec, got.export_id)
        except RenderRefused:
            refused += 1
            conf_dir = tmp_path / f"c{i}"
            conf_dir.mkdir()
            (conf_dir / name).write_text(text)
            backend = GaneshaBackend(GaneshaConfig(conf_dir=conf_dir), tmp_path / "g.json")
            with pytest.raises((StateError, RenderRefused)):
                for f in backend.in_force().values():  # as scan_in_force does
                    render(f)
            continue
        assert again == text, text
    assert accepted > refused > 0  # some edits keep it valid (an id digit, a client)


@pytest.mark.parametrize("export_id", [65536, 99999])
def test_an_id_parse_accepts_and_render_refuses(export_id: int) -> None:
    """Parse takes five digits, render refuses past 65535: such a hand-made file is
    never kept as it is by render-once unless Ganesha serves it (it cannot: uint16),
    so it is rendered again (and refused) before it goes to Ganesha."""
    text = render_conf(random_spec(random.Random(1)), 1000).replace("1000", str(export_id))
    got = parse_conf(grender.conf_name(export_id), text)
    with pytest.raises(RenderRefused):
        render_conf(got.spec, got.export_id)


# ---------------------------------------------------------------- _PARSED


def _backend(tmp_path: Path) -> tuple[GaneshaBackend, Path]:
    conf_dir = tmp_path / "exports.d"
    conf_dir.mkdir()
    return GaneshaBackend(GaneshaConfig(conf_dir=conf_dir), tmp_path / "ganesha.json"), conf_dir


def test_a_cached_text_under_another_name_is_parsed_again(tmp_path: Path) -> None:
    backend, conf_dir = _backend(tmp_path)
    text = render_conf(random_spec(random.Random(3)), 1000)
    (conf_dir / "export-1000.conf").write_text(text)
    assert backend.read_conf_dir().ours["/srv/tools/home"].export_id == 1000
    (conf_dir / "export-1000.conf").rename(conf_dir / "export-1001.conf")
    with pytest.raises(StateError, match=r"export-1001\.conf: holds Export_Id 1000"):
        backend.read_conf_dir()


def test_a_file_gone_or_broken_after_it_was_cached_is_seen(tmp_path: Path) -> None:
    backend, conf_dir = _backend(tmp_path)
    rng = random.Random(4)
    a = render_conf(random_spec(rng, "/srv/a"), 7)
    b = render_conf(random_spec(rng, "/srv/b"), 8)
    (conf_dir / "export-7.conf").write_text(a)
    (conf_dir / "export-8.conf").write_text(b)
    assert sorted(backend.read_conf_dir().ours) == ["/srv/a", "/srv/b"]
    (conf_dir / "export-8.conf").unlink()
    assert sorted(backend.read_conf_dir().ours) == ["/srv/a"]
    assert [k[0] for k in gbackend._PARSED[conf_dir]] == ["export-7.conf"]
    (conf_dir / "export-7.conf").write_text(a[:-1])  # cut short: no newline
    with pytest.raises(StateError, match=r"export-7\.conf: does not end with a newline"):
        backend.read_conf_dir()
    (conf_dir / "export-7.conf").write_text(a)  # and back: read as it is
    assert sorted(backend.read_conf_dir().ours) == ["/srv/a"]


def test_a_file_read_into_a_foreign_one_is_not_taken_from_the_cache(tmp_path: Path) -> None:
    """Our header removed (a hand edit): the file is foreign now, its Path contends."""
    backend, conf_dir = _backend(tmp_path)
    text = render_conf(random_spec(random.Random(5)), 9)
    (conf_dir / "export-9.conf").write_text(text)
    backend.read_conf_dir()
    (conf_dir / "export-9.conf").write_text(text.split("\n", 1)[1])
    conf = backend.read_conf_dir()
    assert conf.ours == {}
    assert conf.foreign_paths == {"/srv/tools/home": "export-9.conf"}
    assert "/srv/tools/home" in backend.foreign_conflicts(conf)


# ---------------------------------------------------------------- client-string caches


def _canonical_reference(client: str) -> bool:
    try:
        return str(parse_network(client)) == client
    except AddressError:
        return False


def _network_reference(client: str) -> object:
    try:
        return ipaddress.ip_network(client, strict=False)
    except ValueError:
        return ValueError


@settings(max_examples=1500, deadline=None)
@client_texts
def test_client_string_caches_answer_as_the_uncached_code(client: str) -> None:
    for _ in range(2):
        assert grender._canonical_str(client) == _canonical_reference(client)
        try:
            got: object = gbackend._network(client)
        except ValueError:
            got = ValueError
        assert got == _network_reference(client)


def test_forget_texts_empties_the_ganesha_client_caches_too() -> None:
    """``run`` calls forget_texts after every cycle so that a long-running daemon keeps
    no addresses of cycles past; the Ganesha render and read-back remember client
    strings too (up to 65,536 each)."""
    grender._canonical_str("192.0.2.77")
    gbackend._network("192.0.2.77")
    assert grender._canonical_str.cache_info().currsize > 0
    assert gbackend._network.cache_info().currsize > 0
    cycle.forget_texts()
    assert grender._canonical_str.cache_info().currsize == 0
    assert gbackend._network.cache_info().currsize == 0
    assert grender._canonical_str("192.0.2.77") and not grender._canonical_str("192.0.2.077")


# ---------------------------------------------------------------- _read_head


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097])
def test_read_head_reads_what_a_buffered_read_of_the_limit_reads(
    tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its size, then one read: the same bytes as ``read(CONF_MAX_BYTES)`` for a file
    under, at and over the limit (4096 here), and for a procfs file whose size says 0."""
    monkeypatch.setattr(gbackend, "CONF_MAX_BYTES", 4096)
    p = tmp_path / "f"
    p.write_bytes(bytes(random.Random(size).randrange(256) for _ in range(size)))
    for path in (str(p), "/proc/version"):
        with open(path, "rb") as fh:
            want = fh.read(4096)
        assert gbackend._read_head(path) == want


def test_read_head_reads_on_after_a_short_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read may return less than asked (FUSE, a signal): the rest is read, never a
    truncated conf file taken for the whole (it could hide a foreign EXPORT block)."""
    monkeypatch.setattr(gbackend, "CONF_MAX_BYTES", 4096)
    p = tmp_path / "f"
    data = bytes(random.Random(7).randrange(256) for _ in range(3000))
    p.write_bytes(data)
    real_open = open

    class Short:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> Short:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def fileno(self) -> int:
            return int(self.fh.fileno())

        def read(self, n: int) -> bytes:
            return bytes(self.fh.read(min(n, 700)))

    monkeypatch.setattr(gbackend, "open", lambda *a, **k: Short(real_open(*a, **k)), raising=False)
    assert gbackend._read_head(str(p)) == data
