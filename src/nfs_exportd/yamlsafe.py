"""The one YAML loader for every file the daemon reads (config, projects file, static
inventory).

Operator files and files other tools write are untrusted input, so YAML's surprises are
refused instead of interpreted:

* anchors and aliases (``&a`` / ``*a``): an alias bomb of a few hundred bytes expands to
  gigabytes downstream (it hung ``sync`` and made ``run`` ignore SIGTERM), and no file
  of ours needs them; merge keys (``<<``) go with them;
* duplicate keys: YAML's "last one wins" silently turned ``removal_confirmations: 3``
  into 1 and dropped a project's volume; both lines are named;
* files larger than a bound per kind of file (read no further than the bound).

libyaml's C parser is used when PyYAML has it (the pure-Python parser takes seconds for a
1 MB inventory); the checks are the same either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node
from yaml.resolver import Resolver

try:  # libyaml's parser (events in C); composing and constructing stay in Python
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]

    LIBYAML = True  # the C parser is in use
except ImportError:  # PyYAML built without libyaml: same checks, slower
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

    LIBYAML = False

MAX_DEPTH = 64  # nesting; ours is at most 5 deep, and deep nesting overflows the C stack

KIB = 1024
MIB = 1024 * KIB
# Bounds per kind of file.  A config file is a page of keys; the projects file of a
# large cloud is a few hundred KB; a static inventory of 100,000 instances is ~10 MB.
CONFIG_MAX_BYTES = 1 * MIB
PROJECTS_MAX_BYTES = 16 * MIB
INVENTORY_MAX_BYTES = 64 * MIB


class YamlRefused(ValueError):
    """The file is not YAML we accept; the message starts with ``FILE:LINE:``."""


class _Loader(Composer, _Parser, SafeConstructor, Resolver):
    """Safe loader: libyaml's events composed in Python, so that anchors, aliases, deep
    nesting, merge keys and duplicate keys are refused before anything is built."""

    def __init__(self, text: str, source: str) -> None:
        _Parser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.source = source
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: Any = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else 0
        anchor = getattr(event, "anchor", None)
        if isinstance(event, AliasEvent) or anchor is not None:
            sign = "alias *" if isinstance(event, AliasEvent) else "anchor &"
            raise YamlRefused(
                f"{self.source}:{line}: not valid YAML here: {sign}{anchor} (anchors and "
                "aliases are refused: they can expand without bound); write the values out"
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YamlRefused(
                f"{self.source}:{line}: not valid YAML here: nested more than {MAX_DEPTH} levels; "
                "no file of nfs-exportd needs that"
            )
        try:
            node: Node | None = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlRefused(
                        f"{self.source}:{line}: not valid YAML here: a merge key ('<<'); "
                        "write the keys out"
                    )
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: the base constructor names it
                if first is not None:
                    raise YamlRefused(
                        f"{self.source}:{line}: not valid YAML here: duplicate key {key!r} (first "
                        f"at line {first}, again at line {line}): YAML would silently keep "
                        "only the last one; remove one of them"
                    )
                seen[key] = line
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result


def loads(text: str, source: str) -> object:
    """Parse one YAML document; YamlRefused for what we refuse, yaml.YAMLError for syntax."""
    loader = _Loader(text, source)
    try:
        return loader.get_single_data()
    except (ValueError, TypeError, RecursionError) as exc:
        if isinstance(exc, YamlRefused):
            raise
        # e.g. an integer of more than 4300 digits
        raise YamlRefused(f"{source}: not valid YAML here: {exc}") from None
    finally:
        loader.dispose()


def read_bounded(path: Path, max_bytes: int, what: str, key: str = "") -> str:
    """The file's UTF-8 text, read no further than ``max_bytes``; YamlRefused beyond
    (``key`` names the config key that sets the bound, if there is one).

    Raises FileNotFoundError, OSError and UnicodeDecodeError as reading does.
    """
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YamlRefused(
            f"{path}: {what} is larger than {max_bytes} bytes, the bound for this kind of "
            "file (a runaway writer?); check it"
            + (f", or raise {key} if it is right" if key else "")
        )
    return data.decode("utf-8")


def load_file(path: Path, max_bytes: int, what: str, key: str = "") -> object:
    """``read_bounded`` then ``loads``: the whole path from file to data."""
    return loads(read_bounded(path, max_bytes, what, key), str(path))
