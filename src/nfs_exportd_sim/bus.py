"""The simulated cloud's notifications, published on a real message bus the way Nova,
Neutron and Keystone publish theirs: through oslo.messaging's own ``Notifier``
(``messagingv2`` driver, so the envelope is oslo.messaging's by construction), on topic
``notifications`` (Nova's ``versioned_notifications`` too when asked), each service on
its own exchange (its ``control_exchange``: ``nova``, ``neutron``, ``keystone``).

Event types and the payload fields a consumer reads are those of the real services:

* Nova (unversioned, ``compute.<host>``): ``compute.instance.create.end``,
  ``compute.instance.update``, ``compute.instance.delete.end``; payload ``instance_id``,
  ``tenant_id``, ``user_id``, ``display_name``, ``state``, ``old_state``, ``fixed_ips``.
* Nova (versioned, ``nova-compute:<host>``): ``instance.create.end``, ``instance.update``,
  ``instance.delete.end``; payload a ``nova_object`` (``InstanceActionPayload``) with
  ``uuid``, ``tenant_id``, ``state``, ``ip_addresses``.
* Neutron (``network.<host>``): ``port.create.end``, ``port.update.end`` (``{"port":
  {...}}``), ``port.delete.end`` (``{"port_id": ..., "port": {...}}``).
* Keystone (``identity.<host>``, basic format): ``identity.project.created``,
  ``identity.project.updated``, ``identity.project.deleted`` (``{"resource_info": ID}``).

Publishing never blocks the simulator for long: a bus that is down loses the message
(``retry=0``), as a real service with bounded retries would.  oslo.messaging is imported
only when a bus is configured.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import uuid
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal

log = logging.getLogger(__name__)

Format = Literal["unversioned", "versioned", "both"]
EXCHANGES = ("nova", "neutron", "keystone")
HOST = "sim-1"


def _conf(exchange: str) -> Any:
    """An oslo.config ConfigOpts of its own per service: its control_exchange is the
    exchange its notifications go to, as in nova.conf / neutron.conf / keystone.conf."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's deprecation notice, via oslo.service
        from oslo_config import cfg
        from oslo_messaging import opts

    conf = cfg.ConfigOpts()
    conf([], project="nfs-exportd-sim", default_config_files=[], default_config_dirs=[])
    for group, group_opts in opts.list_opts():
        conf.register_opts(group_opts, group=None if group in (None, "DEFAULT") else group)
    conf.set_override("control_exchange", exchange)
    return conf


class Publisher:
    """One Notifier per service, against ``url`` (``rabbit://user:pass@host:port/vhost``)."""

    def __init__(self, url: str, fmt: Format = "unversioned") -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import oslo_messaging

        self.url = url
        self.format = fmt
        self.lock = threading.Lock()
        self.published = 0
        self.transports: dict[str, Any] = {}
        self.notifiers: dict[tuple[str, str], Any] = {}
        publishers = {"nova": f"compute.{HOST}", "neutron": f"network.{HOST}"}
        publishers["keystone"] = f"identity.{HOST}"
        for exchange in EXCHANGES:
            transport = oslo_messaging.get_notification_transport(_conf(exchange), url=url)
            self.transports[exchange] = transport
            self.notifiers[(exchange, "notifications")] = oslo_messaging.Notifier(
                transport,
                publisher_id=publishers[exchange],
                driver="messagingv2",
                topics=["notifications"],
                retry=0,
            )
        self.notifiers[("nova", "versioned_notifications")] = oslo_messaging.Notifier(
            self.transports["nova"],
            publisher_id=f"nova-compute:{HOST}",
            driver="messagingv2",
            topics=["versioned_notifications"],
            retry=0,
        )

    def close(self) -> None:
        for t in self.transports.values():
            with contextlib.suppress(Exception):
                t.cleanup()
        self.transports.clear()
        self.notifiers.clear()

    # ------------------------------------------------------------------ publish
    def publish(
        self,
        exchange: str,
        event_type: str,
        payload: Mapping[str, Any],
        topic: str = "notifications",
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """One notification at priority INFO; a bus that is down loses it (logged)."""
        notifier = self.notifiers[(exchange, topic)]
        ctxt = {"request_id": f"req-{uuid.uuid4()}", **(context or {})}
        with self.lock:
            notifier.info(ctxt, event_type, dict(payload))
            self.published += 1

    def instance(
        self,
        event: str,
        server_id: str,
        name: str,
        project_id: str,
        user_id: str,
        state: str,
        addresses: Iterable[str],
        old_state: str | None = None,
    ) -> None:
        """``event`` is ``create.end``, ``update`` or ``delete.end``."""
        addrs = list(addresses)
        ctxt = {"project_id": project_id, "user_id": user_id}
        if self.format in ("unversioned", "both"):
            payload: dict[str, Any] = {
                "instance_id": server_id,
                "display_name": name,
                "tenant_id": project_id,
                "user_id": user_id,
                "state": state,
                "state_description": "",
                "host": HOST,
                "fixed_ips": [
                    {"address": a, "version": 6 if ":" in a else 4, "type": "fixed"} for a in addrs
                ],
            }
            if old_state is not None:
                payload["old_state"] = old_state
            self.publish("nova", f"compute.instance.{event}", payload, context=ctxt)
        if self.format in ("versioned", "both"):
            data: dict[str, Any] = {
                "uuid": server_id,
                "display_name": name,
                "tenant_id": project_id,
                "user_id": user_id,
                "state": state,
                "host": HOST,
                "ip_addresses": [
                    {
                        "nova_object.name": "IpPayload",
                        "nova_object.namespace": "nova",
                        "nova_object.version": "1.0",
                        "nova_object.data": {"address": a, "version": 6 if ":" in a else 4},
                    }
                    for a in addrs
                ],
            }
            if old_state is not None:
                data["state_update"] = {"old_state": old_state, "state": state}
            name_ = "InstanceUpdatePayload" if event == "update" else "InstanceActionPayload"
            self.publish(
                "nova",
                f"instance.{event}",
                {
                    "nova_object.name": name_,
                    "nova_object.namespace": "nova",
                    "nova_object.version": "1.8",
                    "nova_object.data": data,
                },
                topic="versioned_notifications",
                context=ctxt,
            )

    def port(self, event: str, port: Mapping[str, Any]) -> None:
        """``event`` is ``create.end``, ``update.end`` or ``delete.end``."""
        ctxt = {"project_id": port.get("project_id")}
        if event == "delete.end":
            payload: dict[str, Any] = {"port_id": port["id"], "port": dict(port)}
        else:
            payload = {"port": dict(port)}
        self.publish("neutron", f"port.{event}", payload, context=ctxt)

    def project(self, event: str, project_id: str) -> None:
        """``event`` is ``created``, ``updated`` or ``deleted`` (basic format)."""
        self.publish("keystone", f"identity.project.{event}", {"resource_info": project_id})

    def raw(self, exchange: str, routing_key: str, body: bytes | str) -> None:
        """A message that is not a notification at all (malformed, foreign), straight on
        the exchange with kombu, as a broken or hostile publisher would send it."""
        kombu: Any = importlib.import_module("kombu")  # its partial annotations: Any here
        conn = kombu.Connection(self.url.replace("rabbit://", "amqp://", 1), connect_timeout=5)
        try:
            ex = kombu.Exchange(exchange, type="topic", durable=False)
            with conn.Producer() as producer:
                producer.publish(
                    body,
                    exchange=ex,
                    routing_key=routing_key,
                    content_type="application/json",
                    content_encoding="utf-8",
                    declare=[ex],
                    retry=False,
                )
        finally:
            conn.release()
