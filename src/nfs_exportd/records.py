"""Strict pydantic records for the files nfs-exportd reads, and one way to say what is
wrong with one: ``FILE: KEY: what`` (``inventory.yaml: instances[3].addresses: ...``).

Files in ``state_dir`` and the static inventory are read into these models, never
poked at as dicts: an unknown key, a missing one, a bool where a number belongs or a
NaN time is an error that names the file and the key, not a value quietly coerced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import StateError


class Record(BaseModel):
    """Strict (no coercion), closed (unknown keys are errors) and immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, populate_by_name=True, defer_build=True
    )

    def to_json(self) -> dict[str, Any]:
        """The fields that were given (read from the file or set by the writer): a file
        read and written again keeps its keys, and an absent key stays absent."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


R = TypeVar("R", bound=Record)

# A point in time (seconds since the epoch) or a duration: finite, not negative.
Time = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Text = Annotated[str, Field(min_length=1)]


def loc_text(loc: Sequence[int | str]) -> str:
    """pydantic's error location as the key a person looks for: ``instances[3].id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def describe(
    exc: ValidationError,
    source: str,
    *,
    about: Callable[[tuple[int | str, ...]], str] | None = None,
) -> list[str]:
    """One ``SOURCE: KEY: what`` per error.  ``about`` may name the object the key is
    in (``instance 'i-2'``), for files where the index alone is hard to find."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            msg = "expected a mapping"
        key = loc_text(loc)
        what = f" ({about(loc)})" if about is not None and about(loc) else ""
        out.append(f"{source}: {key}: {msg}{what}" if key else f"{source}: {msg}{what}")
    return out


def one_line(problems: Sequence[str], limit: int = 3) -> str:
    """The first few problems on one line (a hold detail, a log line)."""
    shown = "; ".join(problems[:limit])
    more = len(problems) - limit
    return f"{shown}; and {more} more" if more > 0 else shown


def read_json(path: Path, model: type[R], what: str) -> R | None:
    """``path`` read into ``model``; None when it does not exist.  StateError naming the
    file and the key when it cannot be read or is not a valid ``what``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: cannot read {what}: {exc}") from None
    return parse_json(text, path, model, what)


def parse_json(text: str, path: Path, model: type[R], what: str) -> R:
    """``text`` (the content of ``path``) as ``model``, or StateError naming file and key."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        problem = one_line(describe(exc, str(path)))
    except ValueError as exc:  # pydantic-core's own recursion/size guards
        problem = f"{path}: {exc}"
    raise StateError(f"{problem}; not a valid {what}")


def dumps(record: Record) -> str:
    """How every state file is written: indented, keys sorted, one final newline."""
    return json.dumps(record.to_json(), indent=1, sort_keys=True) + "\n"
