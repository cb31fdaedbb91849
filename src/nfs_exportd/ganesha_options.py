"""exports(5) option lists -> the permissions of a Ganesha CLIENT block (pure).

The config keeps one option syntax for both backends (``export_options``, public
exports), so ``backend: ganesha`` maps each word: rw/ro -> Access_Type, root_squash /
no_root_squash / all_squash -> Squash, sec= -> SecType, anonuid/anongid ->
Anonymous_Uid/Gid, secure/insecure -> PrivilegedPort.  Words about how the kernel
server writes or walks the tree (sync, subtree_check, crossmnt, fsid, ...) have no
Ganesha equivalent and are ignored (documented); any other word is refused when the
config is loaded, so a cycle never meets an option whose meaning it would guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# no Ganesha equivalent, and no effect on who may access what: ignored
IGNORED = frozenset(
    {
        "sync",
        "async",
        "wdelay",
        "no_wdelay",
        "subtree_check",
        "no_subtree_check",
        "hide",
        "nohide",
        "crossmnt",
        "nocrossmnt",
        "acl",
        "no_acl",
        "fsid",
    }
)
SEC_FLAVOURS = ("none", "sys", "krb5", "krb5i", "krb5p")
_UINT32 = re.compile(r"0|[1-9][0-9]{0,9}")
UINT32_MAX = 4294967295


@dataclass(frozen=True)
class ClientPerms:
    """What a CLIENT block says besides its clients; every field is always written, so
    nothing is left to the operator's EXPORT_DEFAULTS (Ganesha's own SecType default also
    allows AUTH_NONE, the kernel's does not)."""

    access: str = "RO"  # RW | RO (exports(5): ro unless rw)
    squash: str = "root_squash"  # root_squash | no_root_squash | all_squash
    sec: tuple[str, ...] = ("sys",)
    anon_uid: int | None = None
    anon_gid: int | None = None
    privileged_port: bool | None = None  # None: Ganesha's default (false)


class OptionError(ValueError):
    """An option list that has no exact Ganesha meaning."""


def _uint32(word: str, value: str) -> int:
    if not _UINT32.fullmatch(value) or int(value) > UINT32_MAX:
        raise OptionError(f"{word}={value}: expected a number 0..{UINT32_MAX}")
    return int(value)


def ganesha_perms(options: str) -> ClientPerms:
    """Map an exports(5) option list (already through config.check_options) to a CLIENT
    block's permissions, or raise OptionError naming the word and the fix."""
    access: str | None = None
    root_squash: bool | None = None
    all_squash = False
    sec: tuple[str, ...] = ("sys",)
    anon_uid: int | None = None
    anon_gid: int | None = None
    privileged: bool | None = None
    for word in options.split(","):
        name, eq, value = word.partition("=")
        if name in ("rw", "ro") and not eq:
            if access is not None and access != name.upper():
                raise OptionError("both rw and ro are given: keep one")
            access = name.upper()
        elif name in ("root_squash", "no_root_squash") and not eq:
            if root_squash is not None and root_squash != (name == "root_squash"):
                raise OptionError("both root_squash and no_root_squash are given: keep one")
            root_squash = name == "root_squash"
        elif name in ("all_squash", "no_all_squash") and not eq:
            all_squash = name == "all_squash"
        elif name in ("secure", "insecure") and not eq:
            privileged = name == "secure"
        elif name == "sec" and eq:
            flavours = tuple(value.split(":"))
            bad = [f for f in flavours if f not in SEC_FLAVOURS]
            if bad or len(set(flavours)) != len(flavours):
                raise OptionError(
                    f"sec={value}: Ganesha knows the flavours {', '.join(SEC_FLAVOURS)}, each once"
                )
            sec = flavours
        elif name == "anonuid" and eq:
            anon_uid = _uint32(name, value)
        elif name == "anongid" and eq:
            anon_gid = _uint32(name, value)
        elif name in IGNORED:
            continue
        else:
            raise OptionError(
                f"export option {word!r} has no Ganesha equivalent (backend: ganesha maps "
                "rw, ro, root_squash, no_root_squash, all_squash, sec=, anonuid=, anongid=, "
                "secure, insecure and ignores sync, subtree_check, crossmnt, fsid=, ...): "
                "remove it, or use backend: exportfs"
            )
    squash = "all_squash" if all_squash else ("no_root_squash" if root_squash is False else "")
    return ClientPerms(
        access=access or "RO",
        squash=squash or "root_squash",
        sec=sec,
        anon_uid=anon_uid,
        anon_gid=anon_gid,
        privileged_port=privileged,
    )


def ganesha_option_problem(options: str) -> str | None:
    """Why ``options`` cannot be served by Ganesha exactly (None: it can)."""
    try:
        ganesha_perms(options)
    except OptionError as exc:
        return str(exc)
    return None
