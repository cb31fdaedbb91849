"""The cloud's notifications as a trigger: an oslo.messaging notification listener, set
up the way every OpenStack consumer sets one up (designate-sink, ceilometer): a
``transport_url``, topics, the exchanges of the services (``nova``, ``neutron``,
``keystone``) and a **pool** of our own, so that the daemon gets its own copy of each
message and never takes one from another consumer's queue.

A notification is a trigger, never evidence: the listener only counts what it hears and
asks for an early cycle; the full listing decides.  Nothing here can add, remove or hold
an export.  A bus that is down, refuses our credentials or sends garbage changes nothing
but this module's state: ``run`` keeps its interval as if notifications were off.

oslo.messaging (the ``notifications`` extra) is imported only when a listener starts, so
that ``check``, ``plan`` and ``status`` never pay for it.  Its own connection handling
(kombu) reconnects with backoff (capped at ``notifications.retry_max_seconds``) and logs
every retry; those records are turned into state changes here and kept out of our log,
which gets one line per state change instead.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..config import NotificationsConfig
from ..logs import register_secret

log = logging.getLogger("nfs_exportd")

# What says that an instance, a port or a project changed: Nova (unversioned and
# versioned formats), Neutron, Keystone.  Anything else is counted and ignored.
TRIGGER_EVENTS = frozenset(
    {
        "compute.instance.create.end",
        "compute.instance.delete.end",
        "compute.instance.update",
        "instance.create.end",
        "instance.delete.end",
        "instance.update",
        "port.create.end",
        "port.update.end",
        "port.delete.end",
        "identity.project.created",
        "identity.project.updated",
        "identity.project.deleted",
    }
)
EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
OSLO_LOGGER = "oslo.messaging"


def default_pool() -> str:
    """``nfs-exportd-<short host name>``: one queue per NFS server on each exchange."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]) or "host"
    return f"nfs-exportd-{host}"[:128]


def target_of(url: str) -> str:
    """``host:port/vhost`` of each broker in a transport URL, never its credentials."""
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rsplit("@", 1)[-1]
        return f"{parts.scheme}://{hosts}{unquote(parts.path) or '/'}"
    except ValueError:
        return "(unparsable transport_url)"


def register_url_secrets(url: str) -> None:
    """The passwords (and user:password pairs) of a transport URL, for the redaction
    filter: a record of any library that prints the URL shows ``***`` instead."""
    netloc = urlsplit(url).netloc
    for host in netloc.split(","):
        creds = host.rsplit("@", 1)[0] if "@" in host else ""
        if ":" in creds:
            _user, password = creds.split(":", 1)
            for value in (password, unquote(password), creds):
                register_secret(value)


@dataclass(frozen=True)
class BusEvent:
    kind: str  # "trigger" | "ignored" | "malformed"
    event_type: str
    detail: str = ""


StateCallback = Callable[[str, str], None]  # (state, detail)
EventCallback = Callable[[BusEvent], None]


class _Endpoint:
    """oslo.messaging calls one method per priority; every one lands in ``handle``."""

    def __init__(self, on_event: EventCallback) -> None:
        self.on_event = on_event

    def handle(self, event_type: object, payload: object) -> None:
        if not isinstance(event_type, str) or not EVENT_TYPE.fullmatch(event_type):
            self.on_event(BusEvent("malformed", "", f"event_type {str(event_type)[:60]!r}"))
            return
        if event_type not in TRIGGER_EVENTS:
            self.on_event(BusEvent("ignored", event_type))
            return
        if not isinstance(payload, dict):
            self.on_event(BusEvent("malformed", event_type, "payload is not an object"))
            return
        self.on_event(BusEvent("trigger", event_type))

    def info(self, ctxt: object, publisher_id: object, event_type: object, payload: object,
             metadata: object) -> None:  # fmt: skip
        self.handle(event_type, payload)

    audit = warn = error = critical = debug = sample = info


class _OsloRecords(logging.Handler):
    """oslo.messaging's connection log records, turned into state changes."""

    DOWN = (
        "is unreachable",
        "Connection failed",
        "closed the connection",
        "Failed to consume",
        "Failed to declare consumer",
        "broker has blocked",
    )
    UP = ("Reconnected to AMQP server", "broker has unblocked")
    BAD = ("Failed to process message", "Callback raised an exception", "unsupported version",
           "UnsupportedVersion", "Could not deserialize", "Cannot handle")  # fmt: skip

    def __init__(self, owner: BusListener) -> None:
        super().__init__(logging.DEBUG)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:
            msg = str(record.msg)
        clean = re.sub(r"^\[[0-9a-f-]{36}\] ", "", msg).splitlines()[0] if msg else ""
        if any(k in msg for k in self.UP):
            self.owner.set_state("connected", "")
        elif any(k in msg for k in self.DOWN):
            self.owner.set_state("disconnected", clean[:300])
        elif any(k in msg for k in self.BAD) or (
            record.exc_info and record.levelno >= logging.ERROR
        ):
            self.owner.on_event(BusEvent("malformed", "", clean[:200]))
        elif record.levelno >= logging.WARNING:
            log.debug("oslo.messaging: %s", clean)


class BusListener:
    """Starts, watches and restarts one oslo.messaging notification listener in a
    thread of its own.  ``on_event`` is called for every message, ``on_state`` once per
    state change (``connecting``, ``connected``, ``disconnected``, ``refused``)."""

    def __init__(
        self, cfg: NotificationsConfig, on_event: EventCallback, on_state: StateCallback
    ) -> None:
        if cfg.transport_url is None:
            raise ValueError("notifications.transport_url is not set")
        self.cfg = cfg
        self.url = cfg.transport_url
        self.pool = cfg.pool or default_pool()
        self.target = target_of(self.url)
        self.on_event = on_event
        self._on_state = on_state
        self.state = "off"
        self.detail = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Any = None
        self._transport: Any = None
        self._handler = _OsloRecords(self)
        register_url_secrets(self.url)

    # ------------------------------------------------------------------ state
    def set_state(self, state: str, detail: str) -> None:
        with self._lock:
            changed = state != self.state
            self.state, self.detail = state, detail if state != "connected" else ""
        if changed and not self._stop.is_set():
            self._on_state(state, detail)

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        oslo = logging.getLogger(OSLO_LOGGER)
        oslo.addHandler(self._handler)
        oslo.propagate = False  # its retry lines become our state changes, once each
        oslo.setLevel(logging.INFO)
        logging.getLogger("oslo_service").setLevel(logging.WARNING)  # "Loading backend" notices
        self._thread = threading.Thread(target=self._supervise, name="bus-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2) -> None:
        """Close the connection, waiting at most ``timeout``: a listener still trying
        to connect (a bus down) cannot be interrupted, and must not delay the exit."""
        self._stop.set()
        closer = threading.Thread(target=self._cleanup, name="bus-close", daemon=True)
        closer.start()
        closer.join(timeout)
        logging.getLogger(OSLO_LOGGER).removeHandler(self._handler)

    def _supervise(self) -> None:
        backoff = 1.0
        self.set_state("connecting", "")
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:
                refused = "ACCESS_REFUSED" in str(exc) or type(exc).__name__ == "AccessRefused"
                why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                if refused:
                    why = (
                        f"the broker refused our credentials ({why}); check the user, "
                        "password and vhost in notifications.transport_url"
                    )
                self.set_state("refused" if refused else "disconnected", why)
                self._cleanup()
                if self._stop.wait(backoff):
                    return
                backoff = min(2 * backoff, self.cfg.retry_max_seconds)
                continue
            return  # stopped while connected

    def _listen(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eventlet's deprecation notice (oslo.service)
            import oslo_messaging
            from oslo_config import cfg
            from oslo_messaging import opts

        conf = cfg.ConfigOpts()
        conf([], project="nfs-exportd", default_config_files=[], default_config_dirs=[])
        for group, group_opts in opts.list_opts():
            conf.register_opts(group_opts, group=None if group in (None, "DEFAULT") else group)
        # oslo.messaging's own reconnect backoff, capped by our setting
        conf.set_override("rabbit_retry_interval", 1, group="oslo_messaging_rabbit")
        conf.set_override("rabbit_retry_backoff", 2, group="oslo_messaging_rabbit")
        conf.set_override(
            "rabbit_interval_max", max(1, int(self.cfg.retry_max_seconds)),
            group="oslo_messaging_rabbit",
        )  # fmt: skip
        transport = oslo_messaging.get_notification_transport(conf, url=self.url)
        self._transport = transport
        targets = [
            oslo_messaging.Target(topic=topic, exchange=exchange)
            for exchange in self.cfg.exchanges
            for topic in self.cfg.topics
        ]
        listener = oslo_messaging.get_notification_listener(
            transport,
            targets,
            [_Endpoint(self.on_event)],
            executor="threading",
            pool=self.pool,
        )
        self._listener = listener
        listener.start()  # blocks until connected; oslo.messaging retries meanwhile
        self.set_state("connected", "")
        self._stop.wait()

    def _cleanup(self) -> None:
        listener, self._listener = self._listener, None
        transport, self._transport = self._transport, None
        steps: list[Callable[[], object]] = []
        if listener is not None:
            steps += [listener.stop, listener.wait]
        if transport is not None:
            steps.append(transport.cleanup)
        for step in steps:
            try:
                step()
            except Exception as exc:
                log.debug("notification listener cleanup: %s", exc)
