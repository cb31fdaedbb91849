"""Logging: human-readable lines by default, one JSON object per line with
``--log-format json``; and never a secret, at any level.

Every handler we install carries a redaction filter.  It masks (1) every secret registered
with ``register_secret`` (the passwords and application credential secrets read from
clouds.yaml are registered before the first connection), and (2) anything that looks like
a credential in text: ``password``/``secret``/``token`` keys in JSON, dict reprs or
``key=value``, and ``X-Auth-Token``/``X-Subject-Token`` headers.  The filter applies to
records of every logger (openstacksdk, keystoneauth and urllib3 debug output included),
because it sits on the handler, not on a logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading

MASK = "***"
_secrets: set[str] = set()
_lock = threading.Lock()

_KEYS = r"(?:password|passwd|secret|application_credential_secret|token|auth_token|api_key)"
_PATTERNS = (
    # "password": "x"  /  'password': 'x'
    re.compile(
        rf"""(?P<k>["']{_KEYS}["']\s*:\s*)(?P<q>["'])(?P<v>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.I
    ),
    # password=x  (query strings, command lines, key=value logs)
    re.compile(rf"(?P<k>\b{_KEYS}=)(?P<v>[^\s&,;'\"]+)", re.I),
    # X-Auth-Token: x   X-Subject-Token: x   (headers, curl -H lines)
    re.compile(r"(?P<k>\bX-(?:Auth|Subject|Service)-Token\s*[:=]\s*['\"]?)(?P<v>[^\s'\"}]+)", re.I),
)


def register_secret(value: object) -> None:
    """Never log this string (passwords, secrets).  Short values are ignored: masking
    every "a" would destroy the logs and protect nothing."""
    if isinstance(value, str) and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def _wordlike(secret: str) -> bool:
    """A secret that is also an ordinary word ("wrong", "summer"): masked only where it
    stands as a value, or every sentence with the word is mangled and the mask itself
    tells which word the password is."""
    return secret.isalpha() and len(secret) < 16


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s not in text:
            continue
        if not _wordlike(s):
            text = text.replace(s, MASK)
            continue
        word = re.escape(s)
        # quoted ("wrong", 'wrong'), or after "=" or ":" (password=wrong, pass: wrong)
        text = re.sub(rf"""(?P<q>["']){word}(?P=q)""", rf"\g<q>{MASK}\g<q>", text)
        text = re.sub(rf"(?P<k>[=:]\s*){word}\b", rf"\g<k>{MASK}", text)
    for pat in _PATTERNS:
        text = pat.sub(_masked, text)
    return text


def _masked(m: re.Match[str]) -> str:
    q = m.groupdict().get("q") or ""
    if m.group("v") in ("", MASK) or m.group("v").startswith("{SHA"):
        return m.group(0)  # already masked (keystoneauth hashes tokens as {SHA256}...)
    return f"{m.group('k')}{q}{MASK}{q}"


class RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = redact(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(levelname)s %(message)s")

    def formatException(self, ei: object) -> str:
        return redact(super().formatException(ei))  # type: ignore[arg-type]


def setup_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactFilter())
    handler.set_name("nfs-exportd")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "nfs-exportd"]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
