"""``state_dir/running-config.json``: the config the last cycle ran with.

``run`` keeps its old config when the file on disk turns invalid (SIGHUP reports
``config-invalid``), but ``status``, ``history`` and ``check`` read the file on disk and
refused, so a typo made the monitoring say UNKNOWN while the daemon ran fine.  Every
cycle keeps a copy of the text it ran with (written only when it changed); the read-only
commands fall back to it, saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import Config, load_config, load_config_text
from ..errors import ConfigError, StateError
from ..fsutil import temp_name
from ..records import Record, Time, dumps, read_json
from ..yamlsafe import CONFIG_MAX_BYTES, YamlRefused, loads, read_bounded

log = logging.getLogger("nfs_exportd")

RUNNING = "running-config.json"


class RunningConfig(Record):
    path: str  # the config file it was read from
    text: str
    saved: Time


def remember(cfg: Config) -> None:
    """Keep the config text of this cycle (best effort: only a fallback depends on it)."""
    if not cfg.source_text:
        return
    path = cfg.state_dir / RUNNING
    try:
        old = read_json(path, RunningConfig, "running config copy")
    except StateError:
        old = None
    if old is not None and old.text == cfg.source_text and old.path == str(cfg.source_path):
        return
    rec = RunningConfig(path=str(cfg.source_path), text=cfg.source_text, saved=time.time())
    # Renamed into place but not fsynced, and not a crash-test kill point: nothing safe
    # depends on it, and a copy torn by a crash fails to parse and is ignored.
    tmp = temp_name(path)
    try:
        tmp.write_text(dumps(rec), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning("%s: cannot keep a copy of the running config (%s)", path, exc)


def _state_dir_of(path: Path) -> Path:
    """Where a broken config's state_dir is: its ``state_dir`` key when the YAML still
    says one, else the default."""
    default = Config.model_fields["state_dir"].default
    try:
        text = read_bounded(path, CONFIG_MAX_BYTES, "the config file")
    except (OSError, UnicodeDecodeError, YamlRefused):
        return Path(default)
    try:
        data = loads(text, str(path))
    except (yaml.YAMLError, YamlRefused):  # a syntax error elsewhere: the key's own line
        line = re.search(r"^state_dir:[ \t]*['\"]?([^'\"#\s]+)", text, re.MULTILINE)
        data = {"state_dir": line.group(1)} if line else None
    given = data.get("state_dir") if isinstance(data, dict) else None
    if isinstance(given, str) and given:
        return path.resolve().parent / given
    return Path(default)


@dataclass(frozen=True)
class Fallback:
    """The config file is broken; the commands run on the last cycle's copy."""

    error: str  # the file's ConfigError, on one line
    saved: float  # when the copy was kept

    def line(self, max_error: int | None = None) -> str:
        error = self.error
        if max_error is not None and len(error) > max_error:
            error = error[: max_error - 3] + "..."
        when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(self.saved))
        return (
            f"config-invalid: {error}; showing the state of the daemon, which runs on the "
            f"config as it was at {when}; fix the file ('nfs-exportd config check')"
        )


def load_or_running(path: Path) -> tuple[Config, Fallback | None]:
    """The config in ``path``; when it is invalid, the one the last cycle ran with and
    the error (None when the file is fine).  Raises the file's ConfigError when there is
    no usable copy."""
    try:
        return load_config(path), None
    except ConfigError as exc:
        problem = exc
    try:
        rec = read_json(_state_dir_of(path) / RUNNING, RunningConfig, "running config copy")
        if rec is None or Path(rec.path).resolve() != path.resolve():
            raise problem
        cfg = load_config_text(rec.text, path)
    except (StateError, ConfigError):
        raise problem from None
    return cfg, Fallback(" ".join(str(problem).split()), rec.saved)
