"""List exports_dir: our files parsed, the others only noted (never touched)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import StateError
from ..exportsfile import ManagedFileError, parse
from ..model import EXPORTS_SUFFIX, ExportsFile


@dataclass(frozen=True)
class DirScan:
    managed: dict[str, ExportsFile]
    unmanaged: frozenset[str]
    raw: dict[str, str]  # filename -> exact text of managed files


def scan(exports_dir: Path) -> DirScan:
    """Read every ``*.exports`` file; ours are parsed, the others only noted.

    A managed file that cannot be read or parsed is bad input on disk: StateError naming
    it (the cycle stops and nothing changes).
    """
    managed: dict[str, ExportsFile] = {}
    raw: dict[str, str] = {}
    unmanaged: set[str] = set()
    try:
        names = sorted(os.listdir(exports_dir))
    except FileNotFoundError:
        raise StateError(f"{exports_dir}: exports_dir does not exist") from None
    except OSError as exc:
        raise StateError(f"{exports_dir}: cannot list exports_dir: {exc}") from None
    for name in names:
        if not name.endswith(EXPORTS_SUFFIX):
            continue
        path = exports_dir / name
        if not path.is_file():
            unmanaged.add(name)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            unmanaged.add(name)  # not ours: we only ever write ASCII
            continue
        except OSError as exc:
            raise StateError(f"{path}: cannot read: {exc}") from None
        try:
            parsed = parse(name, text)
        except ManagedFileError as exc:
            raise StateError(f"{exports_dir}/{exc}") from None
        if parsed is None:
            unmanaged.add(name)
        else:
            if name != parsed.kind.filename(parsed.owner):
                raise StateError(
                    f"{path}:1: header says {parsed.kind.value}={parsed.owner} but the file name "
                    "does not match; rename or remove it"
                )
            managed[name] = parsed
            raw[name] = text
    return DirScan(managed, frozenset(unmanaged), raw)
