"""A real OpenStack Keystone for the test suite, owned by the project.

Keystone from PyPI (``requirements.txt``, every version pinned in ``constraints.txt``)
lives in its own virtualenv under ``<repo>/.cache/`` (git-ignored), named after a hash of
the pins and the Python that built it: a pin change builds a new one, an unchanged tree
reuses it (about a minute saved per run).  Each test session then gets a fresh Keystone
in a temporary directory: its own keystone.conf (sqlite in WAL mode, fernet tokens, the
cheapest bcrypt, the in-process cache), ``db_sync``, fernet and credential keys,
``bootstrap``, and gunicorn with one worker and one thread (sqlite allows one writer;
Keystone's memory cache is only coherent within one process) on a free 127.0.0.1 port.

Every step that fails raises ``StepFailed`` with that step's output: the fixture turns it
into a test failure, never a skip.  The server is stopped by its process group (it was
started in a session of its own) and, as a last resort, dies with the test process
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests

from nfs_exportd_sim.lab.proc import die_with_parent, remove_orphaned_workdirs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = REPO / ".cache"
REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = HERE / "constraints.txt"
VENV_PREFIX = "keystone-venv-"
COMPLETE = ".nfs-exportd-complete"
REGION = "RegionOne"
ADMIN_PASSWORD = "ks-admin-pw"
SERVICE_USER = "nfs-sim"  # validates tokens for the simulated Nova and Neutron
SERVICE_PASSWORD = "nfs-sim-pw"
INSTALL_TIMEOUT = 900.0
STEP_TIMEOUT = 120.0
START_TIMEOUT = 60.0


class StepFailed(Exception):
    """A step of installing, bootstrapping or starting Keystone failed."""

    def __init__(self, step: str, output: str) -> None:
        super().__init__(f"real Keystone: step '{step}' failed:\n{output}")
        self.step = step
        self.output = output


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _file_tail(path: Path, lines: int = 40) -> str:
    try:
        return f"--- {path.name}:\n" + _tail(path.read_text(errors="replace"), lines)
    except OSError:
        return f"--- {path.name}: (missing)"


def _env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing of the test's Python or OpenStack settings leaks in
    (pip's settings and proxies do, for the install)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    env = {
        k: v
        for k, v in os.environ.items()
        if k in keep or k.startswith("PIP_") or k.lower().endswith("_proxy")
    }
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(extra)
    return env


def _run(step: str, argv: Sequence[str | Path], timeout: float = STEP_TIMEOUT, **env: str) -> str:
    try:
        proc = subprocess.run(
            [str(a) for a in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            env=_env(**env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else ""
        raise StepFailed(step, f"timed out after {timeout:g} s\n{_tail(out)}") from None
    except OSError as exc:
        raise StepFailed(step, f"cannot run {argv[0]}: {exc}") from None
    if proc.returncode != 0:
        raise StepFailed(step, f"exit {proc.returncode}: {' '.join(map(str, argv))}\n"
                         + _tail(proc.stdout))  # fmt: skip
    return proc.stdout


# --------------------------------------------------------------------------- the venv


def base_python() -> str:
    """An interpreter that can make venvs: the project venv's base, else Debian's."""
    for cand in (getattr(sys, "_base_executable", ""), "/usr/bin/python3"):
        if cand and os.access(cand, os.X_OK):
            ok = subprocess.run(
                [cand, "-c", "import venv, ensurepip"], capture_output=True, check=False
            )
            if ok.returncode == 0:
                return cand
    raise StepFailed("find a python", "no interpreter with venv and ensurepip (python3-venv)")


def venv_key(python: str) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    h = hashlib.sha256()
    for part in (REQUIREMENTS.read_bytes(), CONSTRAINTS.read_bytes(), python.encode(), version):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two test sessions at once (two engineers, one tree) build the venv only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_venv() -> tuple[Path, float]:
    """The cached Keystone venv (built if missing) and the seconds spent building it."""
    python = base_python()
    venv = CACHE / f"{VENV_PREFIX}{venv_key(python)}"
    with _locked(CACHE / "keystone-venv.lock"):
        if (venv / COMPLETE).exists():
            return venv, 0.0
        t0 = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
        _run("create the Keystone venv", [python, "-m", "venv", venv])
        _run(
            "pip install Keystone (tests/keystone_lab/requirements.txt, constraints.txt)",
            [venv / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check",
             "-c", CONSTRAINTS, "-r", REQUIREMENTS],
            timeout=INSTALL_TIMEOUT,
        )  # fmt: skip
        _run("import Keystone", [venv / "bin" / "python", "-c", "import keystone, gunicorn"])
        (venv / COMPLETE).write_text(f"{python}\n")
        for stale in CACHE.glob(f"{VENV_PREFIX}*"):  # older pins: not used again
            if stale != venv and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        return venv, time.monotonic() - t0


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealKeystone:
    """One Keystone, its files in ``workdir``; ``url`` is its ``/v3`` (the auth_url)."""

    def __init__(self, venv: Path, workdir: Path, port: int | None = None) -> None:
        self.venv = venv
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy between the tests and 127.0.0.1
        self._admin_token: str | None = None
        self.roles: dict[str, str] = {}
        self._services: dict[str, str] = {}

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def conf(self) -> Path:
        return self.workdir / "etc" / "keystone.conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    def logs(self) -> str:
        return "\n".join(
            _file_tail(self.log_dir / n) for n in ("gunicorn.log", "keystone.log", "server.out")
        )

    # ------------------------------------------------------------------ set-up
    def configure(self) -> None:
        w = self.workdir
        for d in ("etc", "log", "fernet-keys", "credential-keys"):
            (w / d).mkdir(parents=True, exist_ok=True)
        for d in ("fernet-keys", "credential-keys"):
            (w / d).chmod(0o700)  # Keystone refuses world-readable key repositories
        self.conf.write_text(
            f"""# written by tests/keystone_lab/real_keystone.py: a test Keystone only
[DEFAULT]
log_dir = {w}/log
log_file = keystone.log
[database]
connection = sqlite:///{w}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {w}/fernet-keys
[fernet_receipts]
key_repository = {w}/fernet-keys
[credential]
key_repository = {w}/credential-keys
[identity]
# bcrypt's minimum: the default (12) costs ~0.3 s per password check here
password_hash_rounds = 4
[cache]
# every authenticated GET costs ~0.5 s (hundreds of SQL queries) without it
enabled = true
backend = dogpile.cache.memory
"""
        )

    def _manage(self, step: str, *args: str, **env: str) -> None:
        _run(step, [self.venv / "bin" / "keystone-manage", "--config-file", self.conf, *args],
             **env)  # fmt: skip

    def bootstrap(self) -> None:
        t0 = time.monotonic()
        self._manage("keystone-manage db_sync", "db_sync")
        # readers never block the one writer, and a reader never sees "database is locked"
        with contextlib.closing(sqlite3.connect(self.workdir / "keystone.db")) as db:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StepFailed("sqlite WAL", f"journal_mode is {mode!r}")
        owner = ("--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
                 "--keystone-group", grp.getgrgid(os.getgid()).gr_name)  # fmt: skip
        self._manage("keystone-manage fernet_setup", "fernet_setup", *owner)
        self._manage("keystone-manage credential_setup", "credential_setup", *owner)
        self._manage(
            "keystone-manage bootstrap",
            "bootstrap",
            "--bootstrap-username", "admin",
            "--bootstrap-project-name", "admin",
            "--bootstrap-role-name", "admin",
            "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", REGION,
            "--bootstrap-admin-url", self.url,
            "--bootstrap-public-url", self.url,
            "--bootstrap-internal-url", self.url,
            OS_BOOTSTRAP_PASSWORD=ADMIN_PASSWORD,
        )  # fmt: skip
        self.timings["bootstrap"] = time.monotonic() - t0

    # ------------------------------------------------------------------ run
    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Serve on ``self.port`` (the same port again after ``stop``) and wait until a
        token can be had."""
        if self.running:
            return
        t0 = time.monotonic()
        gunicorn = [
            self.venv / "bin" / "gunicorn",
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1", "--threads", "1", "--worker-class", "sync",
            "--timeout", "120", "--graceful-timeout", "3", "--no-control-socket",
            "--pythonpath", HERE, "--chdir", self.workdir,
            "--error-logfile", self.log_dir / "gunicorn.log",
            "--access-logfile", self.log_dir / "access.log",
            "ks_wsgi:application",
        ]  # fmt: skip
        with (self.log_dir / "server.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [str(a) for a in gunicorn],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(OS_KEYSTONE_CONFIG_DIR=str(self.workdir / "etc")),
                start_new_session=True,  # its own process group: stopped as one
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise StepFailed("start gunicorn", f"exited with {code}\n{self.logs()}")
            try:
                if self.http.get(self.url, timeout=2).status_code == 200:
                    self._admin_token = None
                    self.admin_token()
                    break
            except (requests.RequestException, StepFailed):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise StepFailed("wait for Keystone", f"no token within {timeout:g} s\n"
                                 + self.logs())  # fmt: skip
            time.sleep(0.1)
        self.timings.setdefault("first start", time.monotonic() - t0)
        self.timings["last start"] = time.monotonic() - t0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the server's process group (gunicorn and its worker), SIGKILL after
        10 s; only the processes this object started."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # a worker that outlived its master
            os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        self.http.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ admin API
    def token(self, user: str, password: str, scope: dict[str, Any] | None) -> str:
        """A token for ``user`` (domain default); ``scope`` as in POST /v3/auth/tokens."""
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"id": "default"}, "password": password}
                },
            }
        }
        if scope is not None:
            auth["scope"] = scope
        r = self.http.post(f"{self.url}/auth/tokens?nocatalog", json={"auth": auth}, timeout=30)
        if r.status_code != 201:
            raise StepFailed(f"token for {user}", f"HTTP {r.status_code}: {r.text[:300]}")
        return str(r.headers["X-Subject-Token"])

    def admin_token(self) -> str:
        if self._admin_token is None:
            scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
            self._admin_token = self.token("admin", ADMIN_PASSWORD, scope)
        return self._admin_token

    def api(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """An admin call; anything but 2xx raises StepFailed with Keystone's answer."""
        r = self.http.request(
            method,
            self.url + path,
            json=body,
            headers={"X-Auth-Token": self.admin_token(), **(headers or {})},
            timeout=30,
        )
        if r.status_code >= 300:
            raise StepFailed(f"{method} {path}", f"HTTP {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def seed(self) -> None:
        """What every test needs: role ids, the simulator's service user (a system reader:
        stock policy lets it validate any token), the compute and network services."""
        self.roles = {r["name"]: r["id"] for r in self.api("GET", "/roles")["roles"]}
        missing = {"admin", "member", "reader"} - set(self.roles)
        if missing:
            raise StepFailed("seed", f"bootstrap made no role(s) {sorted(missing)}")
        uid = self.create_user(SERVICE_USER, SERVICE_PASSWORD)
        self.grant(uid, "reader", system=True)
        for stype, name in (("compute", "nova"), ("network", "neutron")):
            svc = self.api("POST", "/services", {"service": {"type": stype, "name": name}})
            self._services[stype] = svc["service"]["id"]

    def create_project(self, name: str, enabled: bool = True) -> str:
        body = {"project": {"name": name, "domain_id": "default", "enabled": enabled}}
        return str(self.api("POST", "/projects", body)["project"]["id"])

    def set_project_enabled(self, project_id: str, enabled: bool) -> None:
        self.api("PATCH", f"/projects/{project_id}", {"project": {"enabled": enabled}})

    def delete_project(self, project_id: str) -> None:
        self.api("DELETE", f"/projects/{project_id}")

    def create_user(self, name: str, password: str) -> str:
        body = {"user": {"name": name, "domain_id": "default", "password": password}}
        return str(self.api("POST", "/users", body)["user"]["id"])

    def grant(
        self, user_id: str, role: str, project_id: str | None = None, system: bool = False
    ) -> None:
        if (project_id is None) == (not system):
            raise ValueError("give exactly one of project_id or system=True")
        target = "/system" if system else f"/projects/{project_id}"
        self.api("PUT", f"{target}/users/{user_id}/roles/{self.roles[role]}")

    def list_projects(self) -> dict[str, tuple[str, bool]]:
        """id -> (name, enabled), as the admin sees it."""
        return {
            p["id"]: (p["name"], p["enabled"])
            for p in self.api("GET", "/projects")["projects"]
            if not p.get("is_domain")
        }

    def point_catalog(self, compute_url: str, network_url: str) -> None:
        """Register (or move) the compute and network endpoints, public and internal."""
        for stype, url in (("compute", compute_url), ("network", network_url)):
            sid = self._services[stype]
            have = self.api("GET", f"/endpoints?service_id={sid}")["endpoints"]
            for iface in ("public", "internal"):
                ep = next((e for e in have if e["interface"] == iface), None)
                if ep is None:
                    body = {"service_id": sid, "interface": iface, "url": url, "region_id": REGION}
                    self.api("POST", "/endpoints", {"endpoint": body})
                elif ep["url"] != url:
                    self.api("PATCH", f"/endpoints/{ep['id']}", {"endpoint": {"url": url}})

    @property
    def version(self) -> str:
        out = _run("keystone version", [self.venv / "bin" / "python", "-c",
                   "import importlib.metadata as m; print(m.version('keystone'))"])  # fmt: skip
        return out.strip()


WORKDIR_PREFIX = "nfs-exportd-keystone-"


def launch() -> RealKeystone:
    """Install (or reuse), configure, bootstrap, start and seed a Keystone; the caller
    ``close()``s it.  Raises StepFailed, after cleaning up what it started."""
    venv, install_s = ensure_venv()
    remove_orphaned_workdirs(WORKDIR_PREFIX)
    ks = RealKeystone(venv, Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX)))
    (ks.workdir / "owner.pid").write_text(f"{os.getpid()}\n")
    ks.timings["install"] = install_s
    atexit.register(ks.stop)  # if the session's teardown never runs
    try:
        ks.configure()
        ks.bootstrap()
        ks.start()
        t0 = time.monotonic()
        ks.seed()
        ks.timings["seed"] = time.monotonic() - t0
    except BaseException:
        ks.close()
        raise
    return ks
