"""Nova and Neutron in front of a *real* Keystone: token validation as keystonemiddleware
does it, so that the simulated compute and network services accept exactly the tokens the
real Keystone issued and still accepts.

The simulator's services are registered in the real Keystone's catalog; every request's
``X-Auth-Token`` is validated with ``GET /v3/auth/tokens`` (``X-Subject-Token``) by a
service user.  As with keystonemiddleware: a token Keystone does not validate (unknown,
expired, revoked, its project disabled or deleted: Keystone answers 404) is a 401 for the
client; a Keystone that cannot be asked (down, 5xx, the service user refused) is a 503.
Scope and roles come from the validated token, so the stock policies of ``nova`` and
``neutron`` (project scope; ``all_tenants`` for admin) apply unchanged.  Nothing is cached:
revoking a token or disabling a project takes effect on the next request (the real
middleware caches for up to five minutes, which tests do not want).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .http import ApiError, Response, error_body
from .state import Token, parse_time

UNAVAILABLE = "The Keystone service is temporarily unavailable."


@dataclass(frozen=True)
class ServiceUser:
    """keystonemiddleware's ``[keystone_authtoken]`` user: a system reader by default
    (stock policy ``identity:validate_token`` allows it), or a project-scoped one."""

    username: str
    password: str
    user_domain_id: str = "default"
    project_name: str | None = None  # None: system scope
    project_domain_id: str = "default"


def _v3(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v3") else f"{url}/v3"


class ExternalKeystone:
    """Validates tokens against the Keystone at ``auth_url`` (its ``/v3`` URL)."""

    def __init__(self, auth_url: str, service_user: ServiceUser, timeout: float = 10.0) -> None:
        self.auth_url = _v3(auth_url)
        self.service_user = service_user
        self.timeout = timeout
        self._lock = threading.Lock()
        self._service_token: tuple[str, float] | None = None  # (token, renew after)
        # a proxy between two loopback services would only add a way to fail
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def identity_url(self) -> str:
        """Keystone's root, for the ``WWW-Authenticate`` header of a 401."""
        return self.auth_url[: -len("/v3")]

    def _request(
        self, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or None); ApiError 503 if Keystone cannot answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.auth_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
        )
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, hdrs, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            status, hdrs, raw = exc.code, dict(exc.headers), exc.read()
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            raise _unavailable(f"{UNAVAILABLE} ({type(exc).__name__}: {exc})") from None
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, hdrs, parsed

    def _token(self, renew: bool = False) -> str:
        """The service user's token, fetched when missing, near expiry or ``renew``."""
        with self._lock:
            cached = self._service_token
            if cached is not None and not renew and time.time() < cached[1]:
                return cached[0]
            u = self.service_user
            scope: dict[str, Any] = (
                {"system": {"all": True}}
                if u.project_name is None
                else {"project": {"name": u.project_name, "domain": {"id": u.project_domain_id}}}
            )
            auth = {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": u.username,
                                "domain": {"id": u.user_domain_id},
                                "password": u.password,
                            }
                        },
                    },
                    "scope": scope,
                }
            }
            status, hdrs, body = self._request("POST", "/auth/tokens?nocatalog", {}, auth)
            token = hdrs.get("X-Subject-Token") or hdrs.get("x-subject-token")
            if status != 201 or not token:
                # keystonemiddleware cannot authenticate itself: the service is unavailable
                raise _unavailable(f"{UNAVAILABLE} (service user {u.username!r}: HTTP {status})")
            try:
                expires = parse_time(body["token"]["expires_at"])
            except (KeyError, TypeError, ValueError):
                expires = time.time() + 300
            self._service_token = (token, expires - 60)
            return token

    def check(self, token_id: str | None) -> tuple[Token | None, str]:
        """(token, "") when Keystone validates ``token_id``; (None, why) when it does not.
        Raises ApiError 503 when Keystone cannot be asked."""
        if not token_id:
            return None, "no token"
        for renew in (False, True):
            headers = {"X-Auth-Token": self._token(renew), "X-Subject-Token": token_id}
            status, _hdrs, body = self._request("GET", "/auth/tokens?nocatalog", headers)
            if status == 200:
                try:
                    return _parse(token_id, body["token"]), ""
                except (KeyError, TypeError, ValueError) as exc:
                    raise _unavailable(f"{UNAVAILABLE} (malformed validation: {exc})") from None
            if status == 404:  # unknown, expired, revoked, project disabled or deleted
                message = body.get("error", {}).get("message") if isinstance(body, dict) else ""
                return None, str(message or "token not found")
            if status not in (401, 403):
                break
            # 401/403: our own token went stale (Keystone restarted with new keys, expired)
        raise _unavailable(f"{UNAVAILABLE} (token validation: HTTP {status})")


def _parse(token_id: str, t: dict[str, Any]) -> Token:
    project = t.get("project")
    system = t.get("system")
    return Token(
        id=token_id,
        user_id=str(t["user"]["id"]),
        project_id=str(project["id"]) if isinstance(project, dict) else None,
        system=isinstance(system, dict) and bool(system.get("all")),
        roles=tuple(str(r["name"]) for r in t.get("roles") or ()),
        issued_at=parse_time(str(t["issued_at"])),
        expires_at=parse_time(str(t["expires_at"])),
        audit_id=str((t.get("audit_ids") or [""])[0]),
    )


def _unavailable(message: str) -> ApiError:
    return ApiError(Response(503, error_body("identity", 503, message)))
