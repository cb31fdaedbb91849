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
1 MB inventory); the checks are the same either way.  A document with no ``&``, ``*`` or
``!`` (no anchor, alias or tag can be in it) is first built straight from the parser's
events (``_build``: about 5x faster than libyaml's own loader, which composes nodes and
then constructs them); whatever that builder does not handle plainly (a duplicate or
complex key, a merge key, deep nesting, a second document, an error) goes through the
checked loader, which refuses or builds it with the messages below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.error import YAMLError
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode
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


class _Unusual(Exception):
    """Something the direct builder leaves to the checked loader (a tag, an anchor, an
    alias, a duplicate or complex key, deep nesting, a second document): the checked
    loader refuses it or builds it, with its own messages."""


_STR = "tag:yaml.org,2002:str"


def _build(text: str) -> object:
    """One document built straight from libyaml's events, without nodes: the same data
    as ``_Loader`` for plain documents (the inventory of a large cloud), at about the
    cost of the C parser's events.  _Unusual for anything else."""
    parser = _Loader(text, "")
    try:
        get: Any = parser.get_event
        resolve: Any = parser.resolve
        constructors: dict[Any, Any] = parser.yaml_constructors
        tags: dict[str, str] = {}  # plain scalar -> its implicit tag (most repeat)
        stack: list[Any] = []  # the open collections (lists and dicts)
        keys: list[Any] = []  # per open mapping: the pending key, _NOKEY when none
        result: object = None
        done = False
        _NOKEY = keys  # a sentinel no key can be
        depth = 0
        while True:
            ev: Any = get()
            cls = type(ev)
            if cls is ScalarEvent:
                if ev.anchor is not None or ev.tag is not None:
                    raise _Unusual
                value: Any = ev.value
                if ev.implicit[0]:  # plain: resolved as the safe loader resolves it
                    tag = tags.get(value)
                    if tag is None:
                        tag = tags[value] = resolve(ScalarNode, value, (True, False))
                    if tag != _STR:
                        ctor = constructors.get(tag)
                        if ctor is None or tag == "tag:yaml.org,2002:merge":
                            raise _Unusual
                        node = ScalarNode(tag, value, ev.start_mark, ev.end_mark, ev.style)
                        value = ctor(parser, node)
            elif cls is SequenceStartEvent or cls is MappingStartEvent:
                if ev.anchor is not None or (ev.tag is not None and ev.tag != "!"):
                    raise _Unusual
                depth += 1
                if depth >= MAX_DEPTH:  # near the bound: the checked loader decides
                    raise _Unusual
                if cls is SequenceStartEvent:
                    stack.append([])
                else:
                    stack.append({})
                keys.append(_NOKEY)
                continue
            elif cls is SequenceEndEvent or cls is MappingEndEvent:
                depth -= 1
                value = stack.pop()
                keys.pop()
            elif cls is AliasEvent:
                raise _Unusual
            elif cls is DocumentStartEvent:
                if done:
                    raise _Unusual  # a second document: the checked loader says so
                continue
            elif cls is StreamEndEvent:
                return result
            else:  # StreamStart, DocumentEnd
                continue
            if not stack:
                result, done = value, True
                continue
            top = stack[-1]
            if type(top) is list:
                top.append(value)
            elif keys[-1] is _NOKEY:
                if type(value) in (list, dict) or value in top:
                    raise _Unusual  # a complex or duplicate key
                keys[-1] = value
            else:
                top[keys[-1]] = value
                keys[-1] = _NOKEY
    except _Unusual:
        raise
    except (ValueError, TypeError, RecursionError, YAMLError):
        raise _Unusual from None  # the checked loader raises it with its own message
    finally:
        parser.dispose()


def loads(text: str, source: str) -> object:
    """Parse one YAML document; YamlRefused for what we refuse, yaml.YAMLError for syntax."""
    if "&" not in text and "*" not in text and "!" not in text:
        try:
            return _build(text)
        except _Unusual:
            pass
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
