"""Keystone v3, as much of it as a client of projects and tokens sees.

Follows the real service where clients can tell the difference: version discovery answers
``300 Multiple Choices`` at the root, tokens come back in ``X-Subject-Token`` with a
``201``, a scope the user holds no role on is ``401`` (not 403), a token whose project was
disabled or deleted no longer validates (``404`` when validated, ``401`` when used), and
``GET /v3/projects`` follows the stock policy (system reader, or admin) and marks a list
cut at ``list_limit`` with ``"truncated": true``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .http import Request, Response, fail, parse_bool
from .scenario import stable_id
from .state import ROLE_IDS, CloudState, ProjectRec, Token, iso

API_VERSION = "v3.14"
UPDATED = "2020-04-07T00:00:00Z"
MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
UNAUTHORIZED = "The request you have made requires authentication."


def _version(root: str) -> dict[str, Any]:
    return {
        "id": API_VERSION,
        "status": "stable",
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{root}/v3/"}],
        "media-types": MEDIA,
    }


class Urls(Protocol):
    """Where the catalog points: the SimCloud serving this Keystone."""

    @property
    def identity_url(self) -> str: ...
    def compute_url(self, region: str) -> str: ...
    def network_url(self, region: str) -> str: ...


class Keystone:
    def __init__(self, state: CloudState, urls: Urls) -> None:
        self.state = state
        self.urls = urls
        self.tokens_issued = 0

    def handle(self, req: Request) -> Response:
        path, m = req.path, req.method
        if path == "" and m in ("GET", "HEAD"):
            return Response(300, {"versions": {"values": [_version(req.root)]}})
        if path == "/v3" and m in ("GET", "HEAD"):
            return Response(200, {"version": _version(req.root)})
        if path == "/v3/auth/tokens":
            if m == "POST":
                return self.issue(req)
            if m in ("GET", "HEAD"):
                return self.validate(req)
            if m == "DELETE":
                return self.revoke(req)
            raise fail("identity", 405, "method not allowed")
        if m not in ("GET", "HEAD"):
            raise fail("identity", 405, "method not allowed")
        if path == "/v3/projects":
            return self.list_projects(req)
        if path.startswith("/v3/projects/") and path.count("/") == 3:
            return self.get_project(req, path.rsplit("/", 1)[1])
        if path == "/v3/regions":
            return self.list_regions(req)
        if path.startswith("/v3/regions/") and path.count("/") == 3:
            return self.get_region(req, path.rsplit("/", 1)[1])
        raise fail("identity", 404, f"the resource could not be found: {path}")

    # ------------------------------------------------------------------ tokens

    def _auth(self, req: Request) -> Token:
        tok, _why = self.state.check_token(req.header("X-Auth-Token"))
        if tok is None:
            raise fail("identity", 401, UNAUTHORIZED)
        return tok

    def issue(self, req: Request) -> Response:
        body = req.json()
        auth = body.get("auth") if isinstance(body, dict) else None
        if not isinstance(auth, dict) or not isinstance(auth.get("identity"), dict):
            raise fail("identity", 400, "'auth' with 'identity' is a required property")
        ident = auth["identity"]
        if "password" not in (ident.get("methods") or []):
            raise fail("identity", 401, "only password authentication is simulated")
        user_spec = (ident.get("password") or {}).get("user") or {}
        password = user_spec.get("password")
        st = self.state
        with st.lock:
            if isinstance(user_spec.get("id"), str):
                user = st.users.get(user_spec["id"])
            else:
                dom = st.domain_id_for(user_spec.get("domain"))
                user = st.find_user(str(user_spec.get("name")), dom) if dom else None
            if user is None or not isinstance(password, str) or password != user.password:
                raise fail("identity", 401, UNAUTHORIZED)
            scope = auth.get("scope")
            project: ProjectRec | None = None
            system = False
            if scope in (None, "unscoped"):
                pass
            elif isinstance(scope, dict) and "system" in scope:
                if scope["system"] != {"all": True}:
                    raise fail("identity", 400, "system scope must be {'all': true}")
                system = True
                if not any(g.project_id is None for g in user.grants):
                    raise fail("identity", 401, "user has no role assignment on the system")
            elif isinstance(scope, dict) and isinstance(scope.get("project"), dict):
                project = self._scope_project(scope["project"])
                if not any(g.project_id == project.id for g in user.grants):
                    raise fail(
                        "identity",
                        401,
                        f"User {user.id} has no access to project {project.id}",
                    )
            else:
                raise fail("identity", 401, "only project and system scope are simulated")
            tok = st.issue_token(user, project.id if project else None, system)
            self.tokens_issued += 1
            body = self.token_body(tok, catalog=tok.project_id is not None or tok.system)
        return Response(201, body, {"X-Subject-Token": tok.id})

    def _scope_project(self, spec: dict[str, Any]) -> ProjectRec:
        st = self.state
        p: ProjectRec | None = None
        if isinstance(spec.get("id"), str):
            p = st.projects.get(spec["id"])
        else:
            dom = st.domain_id_for(spec.get("domain"))
            for cand in st.projects.values():
                if cand.name == spec.get("name") and cand.domain_id == dom:
                    p = cand
        if p is None:
            raise fail("identity", 401, f"Could not find project: {spec.get('id') or spec}")
        if not p.enabled:
            raise fail("identity", 401, f"Project {p.id} is disabled")
        return p

    def validate(self, req: Request) -> Response:
        caller = self._auth(req)
        subject_id = req.header("X-Subject-Token")
        if not subject_id:
            raise fail("identity", 400, "X-Subject-Token header is required")
        subject, _why = self.state.check_token(subject_id)
        if subject is None:
            raise fail("identity", 404, f"Could not find token: {subject_id}")
        if not (caller.system and "reader" in caller.roles) and caller.user_id != subject.user_id:
            raise fail("identity", 403, "You are not authorized to perform identity:validate_token")
        with self.state.lock:
            body = self.token_body(subject, catalog=req.arg("nocatalog") is None)
        return Response(200, body, {"X-Subject-Token": subject.id})

    def revoke(self, req: Request) -> Response:
        caller = self._auth(req)
        subject_id = req.header("X-Subject-Token") or ""
        with self.state.lock:
            subject = self.state.tokens.get(subject_id)
            if subject is None:
                raise fail("identity", 404, f"Could not find token: {subject_id}")
            if caller.user_id != subject.user_id and not caller.is_admin:
                raise fail("identity", 403, "You are not authorized to revoke this token")
            del self.state.tokens[subject_id]
        return Response(204)

    def token_body(self, tok: Token, catalog: bool) -> dict[str, Any]:
        st = self.state
        user = st.users[tok.user_id]
        dom = st.domains[user.domain_id]
        t: dict[str, Any] = {
            "methods": ["password"],
            "user": {
                "domain": {"id": dom.id, "name": dom.name},
                "id": user.id,
                "name": user.name,
                "password_expires_at": None,
            },
            "audit_ids": [tok.audit_id],
            "expires_at": iso(tok.expires_at, micro=True),
            "issued_at": iso(tok.issued_at, micro=True),
        }
        if tok.project_id is not None:
            p = st.projects[tok.project_id]
            pdom = st.domains[p.domain_id]
            t["project"] = {
                "domain": {"id": pdom.id, "name": pdom.name},
                "id": p.id,
                "name": p.name,
            }
            t["is_domain"] = False
        if tok.system:
            t["system"] = {"all": True}
        if tok.project_id is not None or tok.system:
            t["roles"] = [{"id": ROLE_IDS[r], "name": r} for r in tok.roles]
        if catalog and (tok.project_id is not None or tok.system):
            t["catalog"] = self.catalog()
        return {"token": t}

    def catalog(self) -> list[dict[str, Any]]:
        def identity_url(_region: str) -> str:
            return self.urls.identity_url

        services: list[tuple[str, str, Callable[[str], str]]] = [
            ("identity", "keystone", identity_url),
            ("compute", "nova", self.urls.compute_url),
            ("network", "neutron", self.urls.network_url),
        ]
        out = []
        for stype, name, url_for in services:
            endpoints = [
                {
                    "id": stable_id("endpoint", stype, region, iface),
                    "interface": iface,
                    "region": region,
                    "region_id": region,
                    "url": url_for(region),
                }
                for region in self.state.regions
                for iface in ("public", "internal")
            ]
            out.append(
                {
                    "endpoints": endpoints,
                    "id": stable_id("service", stype),
                    "type": stype,
                    "name": name,
                }
            )
        return out

    # ------------------------------------------------------------------ projects, regions

    def _project_body(self, root: str, p: ProjectRec) -> dict[str, Any]:
        return {
            "id": p.id,
            "name": p.name,
            "domain_id": p.domain_id,
            "description": p.description,
            "enabled": p.enabled,
            "parent_id": p.domain_id,
            "is_domain": False,
            "tags": [],
            "options": {},
            "links": {"self": f"{root}/v3/projects/{p.id}"},
        }

    def list_projects(self, req: Request) -> Response:
        tok = self._auth(req)
        if not ((tok.system and "reader" in tok.roles) or tok.is_admin):
            raise fail(
                "identity",
                403,
                "You are not authorized to perform the requested action: identity:list_projects.",
            )
        wanted_enabled: bool | None = None
        if req.arg("enabled") is not None:
            wanted_enabled = parse_bool(req.arg("enabled") or "")
            if wanted_enabled is None:
                raise fail("identity", 400, f"Invalid enabled filter: {req.arg('enabled')!r}")
        name, domain_id = req.arg("name"), req.arg("domain_id")
        parent_id = req.arg("parent_id")
        is_domain = parse_bool(req.arg("is_domain") or "false")
        with self.state.lock:
            projects = [
                p
                for p in self.state.projects.values()
                if (wanted_enabled is None or p.enabled == wanted_enabled)
                and (name is None or p.name == name)
                and (domain_id is None or p.domain_id == domain_id)
                and (parent_id is None or p.domain_id == parent_id)
                and not is_domain
            ]
            limit = self.state.settings.keystone_list_limit
            truncated = limit is not None and len(projects) > limit
            if limit is not None:
                projects = projects[:limit]
            body: dict[str, Any] = {
                "projects": [self._project_body(req.root, p) for p in projects],
                "links": {"self": f"{req.root}/v3/projects", "previous": None, "next": None},
            }
        if truncated:
            body["truncated"] = True
        return Response(200, body)

    def get_project(self, req: Request, project_id: str) -> Response:
        tok = self._auth(req)
        with self.state.lock:
            p = self.state.projects.get(project_id)
            if p is None:
                raise fail("identity", 404, f"Could not find project: {project_id}.")
            if not (
                (tok.system and "reader" in tok.roles)
                or tok.is_admin
                or tok.project_id == project_id
            ):
                raise fail("identity", 403, "You are not authorized: identity:get_project.")
            return Response(200, {"project": self._project_body(req.root, p)})

    def _region_body(self, root: str, region: str) -> dict[str, Any]:
        return {
            "id": region,
            "description": "",
            "parent_region_id": None,
            "links": {"self": f"{root}/v3/regions/{region}"},
        }

    def list_regions(self, req: Request) -> Response:
        self._auth(req)
        return Response(
            200,
            {
                "regions": [self._region_body(req.root, r) for r in self.state.regions],
                "links": {"self": f"{req.root}/v3/regions", "previous": None, "next": None},
            },
        )

    def get_region(self, req: Request, region: str) -> Response:
        self._auth(req)
        if region not in self.state.regions:
            raise fail("identity", 404, f"Could not find region: {region}.")
        return Response(200, {"region": self._region_body(req.root, region)})
