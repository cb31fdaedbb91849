"""Request and response values shared by the three simulated services.

Handlers are plain functions from a Request to a Response, so that faults can be applied
to the response a handler *would* have sent (a truncated body is the real body cut short)
and so that the handlers can be read without any HTTP server plumbing around them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

JSON = "application/json"


@dataclass
class Request:
    method: str
    service: str  # identity | compute | network | "" (not a service path)
    region: str | None
    root: str  # absolute URL of the service root, e.g. http://127.0.0.1:PORT/compute/RegionOne
    path: str  # path below the service root, no trailing slash, "" for the root itself
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def arg(self, name: str) -> str | None:
        """The last value of a query parameter (how webob's ``params[name]`` reads it)."""
        found = None
        for k, v in self.query:
            if k == name:
                found = v
        return found

    def args(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise ApiError(Response.error(self.service, 400, f"malformed JSON body: {e}")) from e


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()

    @staticmethod
    def error(service: str, status: int, message: str) -> Response:
        """An error in the body format of the service that would have sent it."""
        return Response(status, error_body(service, status, message))


TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
NOVA_KEYS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    503: "serviceUnavailable",
}
NEUTRON_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    409: "HTTPConflict",
    503: "HTTPServiceUnavailable",
}


def error_body(service: str, status: int, message: str) -> dict[str, Any]:
    title = TITLES.get(status, "Error")
    if service == "compute" and status != 401:
        return {NOVA_KEYS.get(status, "computeFault"): {"code": status, "message": message}}
    if service == "network" and status != 401:
        return {
            "NeutronError": {
                "type": NEUTRON_TYPES.get(status, "HTTPInternalServerError"),
                "message": message,
                "detail": "",
            }
        }
    # Keystone, and keystonemiddleware's 401 in front of Nova and Neutron
    return {"error": {"code": status, "title": title, "message": message}}


class ApiError(Exception):
    """Raised by a handler to answer with ``response`` (an error in the service's format)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def fail(service: str, status: int, message: str) -> ApiError:
    return ApiError(Response.error(service, status, message))


def link(root: str, path: str, query: list[tuple[str, str]]) -> str:
    return f"{root}{path}" + (f"?{urlencode(query)}" if query else "")


def parse_bool(value: str) -> bool | None:
    """oslo's bool_from_string(strict=True): None when the value is not a boolean."""
    v = value.strip().lower()
    if v in ("1", "t", "true", "on", "y", "yes"):
        return True
    if v in ("0", "f", "false", "off", "n", "no"):
        return False
    return None
