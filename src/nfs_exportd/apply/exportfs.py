"""Apply layer for the kernel NFS server: files in ``exports_dir``, then ``exportfs -ra``.

Write (atomic, only files whose content changes), reload, check exit code *and* stderr
(exportfs exits 0 on some errors and applies the good files when one is bad), read the
etab back and compare, and on any failure return to the last verified files, reload and
read those back (saying ``UNDO FAILED`` when that fails too).  Every exportfs call is
bounded: its own session, output in temporary files, the session killed on timeout.
We only ever write IP literals as clients, so exportfs has no name to resolve.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import ApplyError, BackendUnavailable, StateError
from ..exportsfile import ManagedFileError, UntrustedVerified, parse, render, rendered_problem
from ..fsutil import atomic_remove, atomic_write
from ..killpoints import kill_point
from ..model import EXPORTS_SUFFIX, HEADER_PREFIX, ExportsFile
from . import pending

log = logging.getLogger(__name__)

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL after a timeout
MAX_OUTPUT = 1 << 20  # bytes of stdout/stderr read back; exportfs writes a few lines

# "exportfs: /etc/exports.d/a.exports:3: unknown keyword" (error)
_FILE_LINE = re.compile(r"^exportfs: (?P<file>/\S+?):(?P<line>\d+): (?P<msg>.*)$")
# "exportfs: /etc/exports.d/a.exports [2]: Neither 'subtree_check' ..." (warning)
_FILE_WARN = re.compile(r"^exportfs: (?P<file>/\S+?) \[(?P<line>\d+)\]: (?P<msg>.*)$")
_STAT = re.compile(r"^exportfs: Failed to stat (?P<path>/\S*): (?P<msg>.*)$")
# "exportfs: \tCLIENT:/path" (duplicated entries), "... (0x425) [IGNORED]" (incompatible)
_PAIR = re.compile(r"^exportfs: \t(?P<client>\S+):(?P<path>/\S*)(?: \(0x[0-9a-f]+\).*)?$")


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


def command_failed(proc: subprocess.CompletedProcess[str]) -> str | None:
    """The cause, first and with its fix, when exportfs_command failed before exportfs
    could speak: sudo refusing (no sudoers rule), exportfs not installed.  Their words are
    the only lines on stderr that exportfs did not write; without this they were a log
    warning and the error was the read-back diff of what did not happen."""
    if proc.returncode == 0:
        return None
    foreign = [m.text for m in parse_stderr(proc.stderr) if not m.text.startswith("exportfs:")]
    if not foreign:
        return None
    said = "; ".join(foreign[:2])
    said = said if len(said) <= 200 else said[:197] + "..."
    low = said.lower()
    if any(
        w in low for w in ("password is required", "terminal is required", "not allowed", "sudoers")
    ):
        fix = (
            "add the sudoers rule for this user (contrib/sudoers.d/nfs-exportd; "
            "'sudo -n -l' run as this user lists what it may run)"
        )
    elif "not found" in low or "no such file" in low or proc.returncode in (126, 127):
        fix = (
            "install nfs-kernel-server (it ships /usr/sbin/exportfs) or fix the path in "
            "exportfs_command"
        )
    else:
        fix = "run exportfs_command by hand as this user to see why"
    return f"exportfs_command failed (exit {proc.returncode}): {said}; {fix}"


def _in_exports_d(path: str) -> bool:
    return path.endswith(".exports") and "/" in path


def parse_etab(text: str) -> dict[tuple[str, str], frozenset[str]]:
    """``path<TAB>client(opt,opt,...)`` lines -> {(path, client): options}.

    One option set per distinct option text (50,000 lines share a handful)."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    sets: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        path, _, rest = line.rpartition("\t")
        client, _, opts = rest.partition("(")
        path = path.strip().replace("\\040", " ")
        got = sets.get(opts)
        if got is None:
            got = sets[opts] = frozenset(opts.rstrip(")").split(","))
        out[(path, client.strip())] = got
    return out


@dataclass
class ApplyResult:
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ran_exportfs: bool = False  # the backend changed what is in force (exportfs ran, DBus calls)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""  # what another backend did, for the sync line (instead of "exportfs ran")
    # the text of every target file as rendered by apply (empty when the backend did not
    # render them), so that the caller does not render 2,500 files a second time
    rendered: dict[str, str] = field(default_factory=dict)


class ExportfsBackend:
    name = "exportfs"

    def __init__(
        self,
        exports_dir: Path,
        command: Sequence[str],
        timeout: float,
        etab: Path,
        pending_marker: Path | None = None,
        last_verified: Callable[[], Mapping[str, str] | None] | None = None,
    ) -> None:
        self.exports_dir = exports_dir
        self.command = list(command)
        self.timeout = timeout
        self.etab = etab
        # Exists from the first file written until exportfs ran and was verified: if the
        # process dies in between, the files are new but the kernel may hold old pairs
        # (removed ones included), so the next apply reloads even with nothing to write.
        self.pending_marker = pending_marker
        # The files last read back in force (state.load_verified): what an undo returns to.
        self.last_verified = last_verified

    # ------------------------------------------------------------------ exportfs
    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run exportfs_command; it ends within ``exportfs_timeout_seconds`` + KILL_GRACE.

        The command starts a session of its own.  Its output goes to unlinked temporary
        files, not pipes: a process it leaves behind holding them cannot keep us waiting.
        On a timeout every process of that session (and every descendant) gets SIGTERM,
        then SIGKILL; after a normal exit, whatever it left in its session is killed too,
        so nothing it started outlives the call (``sudo`` forwards signals to exportfs).
        """
        cmd = [*self.command, *args]
        env = {**os.environ, "LC_ALL": "C"}
        with contextlib.ExitStack() as files:
            try:
                out = files.enter_context(tempfile.TemporaryFile())
                err = files.enter_context(tempfile.TemporaryFile())
            except OSError as exc:
                raise BackendUnavailable(
                    f"cannot create a temporary file for the output of {cmd[0]!r} "
                    f"({exc}): check TMPDIR and free space"
                ) from None
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
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
                proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _stop_session(proc)
                raise BackendUnavailable(
                    f"{' '.join(cmd)} did not finish within {self.timeout:g} s "
                    "(exportfs_timeout_seconds); killed it and every process it started"
                ) from None
            left = _session_members(proc.pid)
            if left:
                log.warning(
                    "%s exited but left %d process(es) behind (pids %s): killed",
                    cmd[0],
                    len(left),
                    " ".join(map(str, sorted(left))),
                )
                _kill(left, signal.SIGKILL)
            return subprocess.CompletedProcess(cmd, proc.returncode, _read(out), _read(err))

    def read_etab(self) -> dict[tuple[str, str], frozenset[str]] | None:
        """The exports in force, or None when the etab file does not exist."""
        try:
            return parse_etab(self.etab.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ApplyError(f"{self.etab}: cannot read the exports in force: {exc}") from None

    def etab_missing(self) -> str:
        return (
            f"etab_file {self.etab} does not exist, so nothing in force can be read back: "
            "exportfs writes it on every reload, so etab_file names the wrong file "
            "(default /var/lib/nfs/etab) or exportfs_command runs exportfs in another "
            "mount namespace; fix etab_file or exportfs_command"
        )

    # ------------------------------------------------------------------ apply
    def apply(
        self,
        targets: Mapping[str, ExportsFile | None],
        current_raw: Mapping[str, str],
        missing_paths: frozenset[str] = frozenset(),
    ) -> ApplyResult:
        """Bring the managed files to ``targets``; raise ApplyError after undoing on failure.

        The undo returns to the last verified state (``last_verified``), not merely to the
        files in force before this cycle: those may never have been verified (a hand edit,
        an interrupted apply), and re-applying them can re-apply the very fault.
        """
        new_text = {n: (render(f) if f is not None else None) for n, f in targets.items()}
        changed = {n: t for n, t in new_text.items() if t != current_raw.get(n)}
        changed = {n: t for n, t in changed.items() if not (t is None and n not in current_raw)}
        result = ApplyResult(rendered={n: t for n, t in new_text.items() if t is not None})
        ours = {n: f for n, f in targets.items() if f is not None}
        interrupted = pending.interrupted(self.pending_marker) if self.pending_marker else None
        failure = None
        if interrupted and self.pending_marker is not None:
            failure = pending.failure(self.pending_marker)
        if failure:
            log.warning(
                "the last apply (%s) failed and its undo was not verified (%s); re-applying",
                interrupted,
                failure,
            )
        elif interrupted:
            log.warning(
                "the last apply (%s) was interrupted before it was verified; re-applying",
                interrupted,
            )
        elif not changed:
            missing = self._verify(ours, {}, missing_paths)
            if not missing:
                return result
            log.warning("exports in force differ from our files (%s); re-applying", missing[0])
        if changed and self.pending_marker is not None:
            try:
                pending.write(self.pending_marker)
            except OSError as exc:
                raise ApplyError(
                    f"{self.pending_marker}: cannot write the apply-pending marker "
                    f"({exc.strerror or exc}): nothing changed, exportfs not run; "
                    "free space in state_dir"
                ) from None
        done: list[str] = []
        name = ""
        try:
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
            if not failed:
                self._clear_marker()  # the kernel never saw the new files
            raise ApplyError(
                f"cannot write {self.exports_dir / name}: {exc.strerror or exc}; "
                f"{undo}, exportfs not run"
            ) from None
        # a file kept as it is drops none of its pairs; one the targets do not name, all
        rewritten = [*changed, *(n for n in current_raw if n not in targets)]
        removed_pairs = self._removed_pairs(current_raw, ours, rewritten)
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
            undo = self._undo(done, current_raw, new_text, missing_paths)
            raise ApplyError(f"{exc}; {undo}") from None
        self._clear_marker()
        return result

    def read_back(
        self, targets: Mapping[str, ExportsFile | None], missing_paths: frozenset[str] = frozenset()
    ) -> list[str]:
        """How the exports in force differ from ``targets`` (empty: they match)."""
        ours = {n: f for n, f in targets.items() if f is not None}
        return self._verify(ours, {}, missing_paths)

    def undo(
        self, current_raw: Mapping[str, str], missing_paths: frozenset[str] = frozenset()
    ) -> str:
        """Return to the last verified state, re-apply and read it back; say how it went."""
        return self._undo([], current_raw, {}, missing_paths)

    def _clear_marker(self) -> None:
        if self.pending_marker is not None:
            with contextlib.suppress(FileNotFoundError):
                atomic_remove(self.pending_marker)

    def _classify(
        self,
        proc: subprocess.CompletedProcess[str],
        our_files: set[str],
        ours: Mapping[str, ExportsFile],
        missing_paths: frozenset[str],
    ) -> tuple[list[str], list[str]]:
        """exportfs's messages -> (errors in our exports, warnings); warnings are logged."""
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
        return errors, warnings

    def _reload(
        self, our_files: set[str], ours: Mapping[str, ExportsFile], missing_paths: frozenset[str]
    ) -> list[str]:
        began = time.monotonic()
        proc = self.run("-ra")
        # the cycle's time apart from exportfs's own (bench/perf.py reads it)
        log.debug("exportfs -ra: %.3f s", time.monotonic() - began)
        failed = command_failed(proc)
        if failed:
            raise BackendUnavailable(failed)
        errors, warnings = self._classify(proc, our_files, ours, missing_paths)
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
        skip_missing: bool = False,
    ) -> list[str]:
        """Read-back: what is wrong in the etab (empty when all is in force as written).

        ``skip_missing``: a path that does not exist cannot be in force (the undo's
        read-back does not count it against the verified state it restores)."""
        etab = self.read_etab()
        problems: list[str] = []
        wanted: set[tuple[str, str]] = set()
        for f in ours.values():
            for line in f.lines:
                if skip_missing and line.path in missing_paths:
                    continue
                req = frozenset(line.options.split(","))
                for client in line.clients:
                    wanted.add((line.path, client))
                    got = None if etab is None else etab.get((line.path, client))
                    if etab is None:
                        continue
                    if got is None:
                        problems.append(f"{f.filename}: {client} -> {line.path} is not in force")
                    elif not req <= got:
                        problems.append(
                            f"{f.filename}: {client} -> {line.path} is in force with options "
                            f"{','.join(sorted(got))}, not {line.options}"
                        )
        if etab is None:
            return [self.etab_missing()] if wanted or removed else []
        for pair, fname in removed.items():
            if pair in etab and pair not in wanted:
                problems.append(f"{fname}: {pair[1]} -> {pair[0]} is still in force")
        return problems

    @staticmethod
    def _removed_pairs(
        current_raw: Mapping[str, str],
        ours: Mapping[str, ExportsFile],
        names: Iterable[str] | None = None,
    ) -> dict[tuple[str, str], str]:
        """The pairs of the files in force that ``ours`` drops: of ``names`` only, when
        given (the files apply rewrites or removes; a file kept as it is drops nothing)."""
        out: dict[tuple[str, str], str] = {}
        keep = None if names is None else set(names)
        # in current_raw's order, as when every file was read: a pair two files drop is
        # named by the same file in the read-back's message
        pick = {n: t for n, t in current_raw.items() if keep is None or n in keep}
        for name, text in pick.items():
            try:
                old = parse(name, text)
            except ManagedFileError:
                continue
            if old is None:
                continue
            new = ours.get(name)
            new_pairs = new.pairs() if new else frozenset()
            for pair in old.pairs() - new_pairs:
                out[pair] = name
        return out

    def _restore(self, names: Iterable[str], goal: Mapping[str, str | None]) -> list[str]:
        """Put ``goal``'s text back (None, or no entry: remove) for each name."""
        failed: list[str] = []
        for name in names:
            path = self.exports_dir / name
            try:
                old = goal.get(name)
                if old is None:
                    with contextlib.suppress(FileNotFoundError):
                        atomic_remove(path)
                else:
                    atomic_write(path, old)
            except OSError as exc:
                failed.append(f"{name}: {exc}")
                log.error("could not restore %s: %s", path, exc)
        return failed

    def _on_disk(self) -> dict[str, str | None]:
        """``*.exports`` names now in exports_dir -> their text when it is ours, else None."""
        out: dict[str, str | None] = {}
        try:
            names = os.listdir(self.exports_dir)
        except OSError:
            return out
        for name in names:
            if not name.endswith(EXPORTS_SUFFIX):
                continue
            try:
                text = (self.exports_dir / name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                out[name] = None
                continue
            out[name] = text if text.startswith(HEADER_PREFIX) else None
        return out

    def _undo(
        self,
        done: list[str],
        current_raw: Mapping[str, str],
        attempted: Mapping[str, str | None],
        missing_paths: frozenset[str],
    ) -> str:
        """Return to the last verified state, re-apply it and read it back; say how that
        went.  Only managed files are touched: a file without our header stays as it is,
        unless this cycle wrote over it (adopt) - then its old text is put back.  With
        no verified state yet (the first cycle), or when the verified copy is not exactly
        what render writes (``rendered_problem``: a hand edit, a bad restore), the files in
        force before are restored: they were in force already, so that widens nothing."""
        distrust = ""
        try:
            verified = self.last_verified() if self.last_verified is not None else None
            for vname, vtext in (verified or {}).items():
                problem = rendered_problem(vname, vtext)
                if problem is not None:
                    raise UntrustedVerified(f"last verified {problem}")
        except StateError as exc:
            log.error("%s", exc)
            verified, distrust = None, f"(the last verified copy is not trusted: {exc})"
        if verified is not None:
            base: dict[str, str | None] = dict(verified)
            same = dict(verified) == {
                n: t for n, t in current_raw.items() if t.startswith(HEADER_PREFIX)
            }
            what = (
                "restored the previous files (the last verified state)"
                if same
                else f"returned to the last verified files ({len(verified)} files; the files "
                "in force before this cycle were not verified)"
            )
        else:
            base = dict(current_raw)
            what = "restored the previous files " + (distrust or "(there is no verified state yet)")
        on_disk = self._on_disk()
        goal: dict[str, str | None] = {}
        for name in set(base) | set(done) | set(current_raw) | set(on_disk):
            ours_now = name in done or on_disk.get(name) is not None
            if name in on_disk and not ours_now:
                continue  # not ours: never touched
            if name in base:
                goal[name] = base[name]
            elif name in current_raw and not current_raw[name].startswith(HEADER_PREFIX):
                goal[name] = current_raw[name]  # ours only since this cycle (adopt)
            else:
                goal[name] = None
        to_write = [n for n, t in sorted(goal.items()) if on_disk.get(n) != t]
        failed = self._restore(to_write, goal)
        if failed:
            what = f"could NOT restore {'; '.join(failed)}"
        goal_files: dict[str, ExportsFile] = {}
        for name, text in goal.items():
            try:
                parsed = parse(name, text) if text is not None else None
            except ManagedFileError:
                parsed = None
            if parsed is not None:
                goal_files[name] = parsed
        before = {**current_raw, **{n: t for n, t in attempted.items() if t is not None}}
        cmd_failed: str | None = None
        try:
            proc = self.run("-ra")
            cmd_failed = command_failed(proc)
            errors, _ = self._classify(proc, set(goal_files), goal_files, missing_paths)
            problems = errors or self._verify(
                goal_files,
                self._removed_pairs(before, goal_files),
                missing_paths,
                skip_missing=True,
            )
        except ApplyError as exc:
            problems = [str(exc)]
        if problems and cmd_failed:
            problems = ["exportfs_command failed again"]  # the cause is said first already
        if problems or failed:
            log.error("UNDO FAILED: the exports in force are not a verified state")
            if self.pending_marker is not None:
                pending.mark_failed(self.pending_marker, (problems or failed)[0])
            return (
                f"UNDO FAILED: {what}, but the read-back of them failed: "
                + "; ".join(problems[:5])
                + "; the exports in force are not a verified state: fix the cause, then run "
                "sync (or 'nfs-exportd rollback')"
            )
        self._clear_marker()
        note = f" (exportfs exit {proc.returncode})" if proc.returncode else ""
        if cmd_failed:  # it did not run, but what is in force is the verified state
            note = " (exportfs_command failed again, but the read-back shows them in force)"
        return f"{what}, re-applied them{note} and verified them in force"


# ---------------------------------------------------------------------- processes


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read(MAX_OUTPUT).decode("utf-8", errors="replace")


def _session_members(sid: int) -> set[int]:
    """Live processes of session ``sid`` (the one the command started), and every
    descendant of its leader; a process that starts a session of its own and is no
    longer a child of ours cannot be found (exportfs never does that)."""
    parents: dict[int, int] = {}
    members: set[int] = set()
    try:
        names = os.listdir("/proc")
    except OSError:
        return members
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) < 4 or fields[0] == "Z":
            continue
        pid = int(name)
        parents[pid] = int(fields[1])
        if int(fields[3]) == sid or int(fields[2]) == sid:
            members.add(pid)
    frontier = {sid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in members}
        members |= frontier
    members.discard(os.getpid())
    return members


def _kill(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the session, KILL_GRACE for it to end, then SIGKILL to what is left;
    reap the leader.  Bounded: never waits on the command's output."""
    _kill(_session_members(proc.pid) | {proc.pid}, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _session_members(proc.pid):
            return
        time.sleep(0.05)
    for _ in range(20):  # SIGKILL is immediate, except for a process stuck in the kernel
        left = _session_members(proc.pid)
        if proc.poll() is None:
            left.add(proc.pid)
        if not left:
            return
        _kill(left, signal.SIGKILL)
        time.sleep(0.05)
    log.error("exportfs_command: processes %s survived SIGKILL", sorted(left))
