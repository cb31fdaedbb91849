"""Apply layer for the kernel NFS server: files in ``exports_dir``, then ``exportfs -ra``.

Write (atomic, only files whose content changes), reload, check exit code *and* stderr
(exportfs exits 0 on some errors and applies the good files when one is bad), read the
etab back and compare, and on any failure restore this cycle's files and reload again.
Every exportfs call has a hard timeout; we only ever write IP literals as clients, so
exportfs has no name to resolve.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ApplyError, BackendUnavailable
from ..exportsfile import render
from ..fsutil import atomic_remove, atomic_write
from ..killpoints import kill_point
from ..model import ExportsFile

log = logging.getLogger(__name__)

# "exportfs: /etc/exports.d/a.exports:3: unknown keyword" (error)
_FILE_LINE = re.compile(r"^exportfs: (?P<file>/\S+?):(?P<line>\d+): (?P<msg>.*)$")
# "exportfs: /etc/exports.d/a.exports [2]: Neither 'subtree_check' ..." (warning)
_FILE_WARN = re.compile(r"^exportfs: (?P<file>/\S+?) \[(?P<line>\d+)\]: (?P<msg>.*)$")
_STAT = re.compile(r"^exportfs: Failed to stat (?P<path>/\S*): (?P<msg>.*)$")
_PAIR = re.compile(r"^exportfs: \t(?P<client>\S+):(?P<path>/\S*)$")


@dataclass(frozen=True)
class Message:
    text: str
    file: str | None = None  # basename of the exports file, when attributed to a file
    line: int | None = None
    path: str | None = None  # export path, when attributed to a path
    warning: bool = False


def parse_stderr(stderr: str) -> list[Message]:
    """Split exportfs stderr into messages, attributed to a file:line or a path if possible."""
    msgs: list[Message] = []
    for raw in stderr.splitlines():
        if not raw.strip():
            continue
        if not raw.startswith("exportfs:") and msgs:
            prev = msgs[-1]  # continuation ("  Assuming default behaviour ...")
            msgs[-1] = Message(
                prev.text + " " + raw.strip(), prev.file, prev.line, prev.path, prev.warning
            )
            continue
        if m := _FILE_LINE.match(raw):
            msgs.append(
                Message(
                    raw,
                    os.path.basename(m["file"]) if _in_exports_d(m["file"]) else m["file"],
                    int(m["line"]),
                )
            )
        elif m := _FILE_WARN.match(raw):
            name = os.path.basename(m["file"]) if _in_exports_d(m["file"]) else m["file"]
            msgs.append(Message(raw, name, int(m["line"]), warning=True))
        elif (m := _STAT.match(raw)) or (m := _PAIR.match(raw)):
            msgs.append(Message(raw, path=m["path"]))
        else:
            msgs.append(Message(raw))
    return msgs


def _in_exports_d(path: str) -> bool:
    return path.endswith(".exports") and "/" in path


def parse_etab(text: str) -> dict[tuple[str, str], frozenset[str]]:
    """``path<TAB>client(opt,opt,...)`` lines -> {(path, client): options}."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        path, _, rest = line.rpartition("\t")
        client, _, opts = rest.partition("(")
        path = path.strip().replace("\\040", " ")
        out[(path, client.strip())] = frozenset(opts.rstrip(")").split(","))
    return out


@dataclass
class ApplyResult:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ran_exportfs: bool = False
    warnings: list[str] = field(default_factory=list)


class ExportfsBackend:
    name = "exportfs"

    def __init__(
        self,
        exports_dir: Path,
        command: Sequence[str],
        timeout: float,
        etab: Path,
        pending_marker: Path | None = None,
    ) -> None:
        self.exports_dir = exports_dir
        self.command = list(command)
        self.timeout = timeout
        self.etab = etab
        # Exists from the first file written until exportfs ran and was verified: if the
        # process dies in between, the files are new but the kernel may hold old pairs
        # (removed ones included), so the next apply reloads even with nothing to write.
        self.pending_marker = pending_marker

    # ------------------------------------------------------------------ exportfs
    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run exportfs_command with a hard timeout.

        The command runs in its own process group so that a timeout kills everything it
        started (``sudo`` forwards SIGTERM to exportfs; SIGKILL follows after 2 s).
        """
        cmd = [*self.command, *args]
        env = {**os.environ, "LC_ALL": "C"}
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise BackendUnavailable(
                f"exportfs_command {cmd[0]!r} not found (config key exportfs_command)"
            ) from None
        except PermissionError as exc:
            raise BackendUnavailable(f"exportfs_command {cmd[0]!r} cannot run: {exc}") from None
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            raise BackendUnavailable(
                f"{' '.join(cmd)} did not finish within {self.timeout:g} s "
                "(exportfs_timeout_seconds); killed"
            ) from None
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    @staticmethod
    def _kill_group(proc: subprocess.Popen[str]) -> None:
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.communicate(timeout=grace)
                if sig is signal.SIGTERM:
                    # the leader is gone; make sure nothing else of the group remains
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                return
            except subprocess.TimeoutExpired:
                continue

    def read_etab(self) -> dict[tuple[str, str], frozenset[str]]:
        try:
            return parse_etab(self.etab.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ApplyError(f"{self.etab}: cannot read the exports in force: {exc}") from None

    # ------------------------------------------------------------------ apply
    def apply(
        self,
        targets: Mapping[str, ExportsFile | None],
        current_raw: Mapping[str, str],
        missing_paths: frozenset[str] = frozenset(),
    ) -> ApplyResult:
        """Bring the managed files to ``targets``; raise ApplyError after undoing on failure."""
        new_text = {n: (render(f) if f is not None else None) for n, f in targets.items()}
        changed = {n: t for n, t in new_text.items() if t != current_raw.get(n)}
        changed = {n: t for n, t in changed.items() if not (t is None and n not in current_raw)}
        result = ApplyResult()
        ours = {n: f for n, f in targets.items() if f is not None}
        interrupted = self.pending_marker is not None and self.pending_marker.exists()
        if interrupted:
            log.warning("the last apply was interrupted before it was verified; re-applying")
        elif not changed:
            missing = self._verify(ours, {}, missing_paths, quiet=True)
            if not missing:
                return result
            log.warning("exports in force differ from our files (%s); re-applying", missing[0])
        done: list[str] = []
        try:
            if changed and self.pending_marker is not None:
                atomic_write(self.pending_marker, f"{os.getpid()}\n")
            for name, text in sorted(changed.items()):
                path = self.exports_dir / name
                if text is None:
                    atomic_remove(path)
                    result.removed.append(name)
                else:
                    atomic_write(path, text)
                    result.written.append(name)
                done.append(name)
        except OSError as exc:
            failed = self._restore(done, current_raw)
            undo = f"could NOT restore {', '.join(failed)}" if failed else "files restored"
            raise ApplyError(
                f"cannot write {self.exports_dir / name}: {exc.strerror or exc}; "
                f"{undo}, exportfs not run"
            ) from None
        removed_pairs = self._removed_pairs(current_raw, ours)
        try:
            result.ran_exportfs = True
            kill_point("exportfs")
            result.warnings = self._reload(set(ours), ours, missing_paths)
            kill_point("reloaded")
            problems = self._verify(ours, removed_pairs, missing_paths)
            if problems:
                raise ApplyError(
                    "read-back of the exports in force failed: " + "; ".join(problems[:5])
                )
        except ApplyError as exc:
            raise ApplyError(f"{exc}; {self._undo(done, current_raw)}") from None
        self._clear_marker()
        return result

    def _clear_marker(self) -> None:
        if self.pending_marker is not None:
            with contextlib.suppress(FileNotFoundError):
                atomic_remove(self.pending_marker)

    def _reload(
        self, our_files: set[str], ours: Mapping[str, ExportsFile], missing_paths: frozenset[str]
    ) -> list[str]:
        proc = self.run("-ra")
        our_paths = {line.path for f in ours.values() for line in f.lines}
        errors: list[str] = []
        warnings: list[str] = []
        for msg in parse_stderr(proc.stderr):
            if msg.warning:
                warnings.append(msg.text)
            elif msg.file is not None:
                (errors if msg.file in our_files else warnings).append(msg.text)
            elif msg.path is not None:
                mine = msg.path in our_paths and msg.path not in missing_paths
                (errors if mine else warnings).append(msg.text)
            elif any(p in msg.text.split() for p in our_paths - missing_paths):
                errors.append(msg.text)
            else:
                # Names no file we manage (e.g. "Failed to resolve HOST": we never write
                # names): a warning; the read-back below decides whether ours applied.
                warnings.append(msg.text)
        for w in warnings:
            log.warning("exportfs: %s", w.removeprefix("exportfs: "))
        if errors:
            raise ApplyError(
                f"exportfs -ra (exit {proc.returncode}) reported errors in our exports: "
                + "; ".join(errors[:5])
            )
        if proc.returncode != 0 and not warnings:
            raise ApplyError(
                f"exportfs -ra failed with exit {proc.returncode} and no message: "
                + (proc.stdout.strip() or "(no output)")
            )
        return warnings

    def _verify(
        self,
        ours: Mapping[str, ExportsFile],
        removed: Mapping[tuple[str, str], str],
        missing_paths: frozenset[str],
        quiet: bool = False,
    ) -> list[str]:
        etab = self.read_etab()
        problems: list[str] = []
        wanted: set[tuple[str, str]] = set()
        for f in ours.values():
            for line in f.lines:
                req = frozenset(line.options.split(","))
                for client in line.clients:
                    wanted.add((line.path, client))
                    got = etab.get((line.path, client))
                    if got is None:
                        problems.append(f"{f.filename}: {client} -> {line.path} is not in force")
                    elif not req <= got:
                        problems.append(
                            f"{f.filename}: {client} -> {line.path} is in force with options "
                            f"{','.join(sorted(got))}, not {line.options}"
                        )
        for pair, fname in removed.items():
            if pair in etab and pair not in wanted:
                problems.append(f"{fname}: {pair[1]} -> {pair[0]} is still in force")
        return problems

    @staticmethod
    def _removed_pairs(
        current_raw: Mapping[str, str], ours: Mapping[str, ExportsFile]
    ) -> dict[tuple[str, str], str]:
        from ..exportsfile import parse

        out: dict[tuple[str, str], str] = {}
        for name, text in current_raw.items():
            old = parse(name, text)
            if old is None:
                continue
            new = ours.get(name)
            new_pairs = new.pairs() if new else frozenset()
            for pair in old.pairs() - new_pairs:
                out[pair] = name
        return out

    def _restore(self, names: list[str], current_raw: Mapping[str, str]) -> list[str]:
        failed: list[str] = []
        for name in names:
            path = self.exports_dir / name
            try:
                old = current_raw.get(name)
                if old is None:
                    atomic_remove(path)
                else:
                    atomic_write(path, old)
            except OSError as exc:
                failed.append(f"{name}: {exc}")
                log.error("could not restore %s: %s", path, exc)
        return failed

    def _undo(self, names: list[str], current_raw: Mapping[str, str]) -> str:
        """Restore this cycle's files and re-apply them; say how that went."""
        failed = self._restore(names, current_raw)
        outcome = "restored the previous files"
        if failed:
            outcome = f"could NOT restore {'; '.join(failed)}"
        try:
            proc = self.run("-ra")
        except BackendUnavailable as exc:
            return f"{outcome}, but could not re-apply them: {exc}"
        if not failed:
            self._clear_marker()  # the old files are back in force
        if proc.returncode != 0:
            return f"{outcome} and re-applied them (exportfs exit {proc.returncode})"
        return f"{outcome} and re-applied them"
