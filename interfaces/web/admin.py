"""``/admin``: users (create, role, block), every API key (revoke) and one's own new keys.

Each action is the API's admin function (:mod:`interfaces.api.routes.admin`,
:mod:`interfaces.api.routes.keys`) with its checks (no self-demotion, no self-blocking, admin
keys for admins only), called as the signed-in admin under row-level security. Forms post with
the session's CSRF token and come back to the page with a fixed message (never echoed input).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Final

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from db.models import KeyScope, Role
from interfaces.api.deps import Caller
from interfaces.api.errors import ApiError
from interfaces.api.routes import admin as api_admin
from interfaces.api.routes import keys as api_keys
from interfaces.web.render import WebRoute, page
from interfaces.web.session import CsrfChecked, PageUser

router = APIRouter(route_class=WebRoute, include_in_schema=False)

DONE: Final = {
    "created": "User created.",
    "role": "Role changed; the user's sessions were ended.",
    "deactivated": "User blocked; their sessions were ended.",
    "reactivated": "User unblocked.",
    "revoked": "API key revoked.",
}


def require_admin(who: Caller) -> None:
    if who.role != "admin":
        raise ApiError(403, "administration is for admins")


def _back(done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin?done={done}", status_code=303)


def _context(who: Caller) -> dict[str, Any]:
    people = api_admin.list_users(who)["items"]
    names = {u["id"]: u["username"] for u in people}
    keys = api_admin.all_keys(who, include_revoked=True)["items"]
    return {
        "users": people,
        "keys": [{**k, "username": names.get(k["user_id"], "?")} for k in keys],
        "roles": [r.value for r in Role],
        "scopes": [s.value for s in KeyScope],
        "done": None,
        "new_key": None,
    }


@router.get("/admin")
def admin_page(request: Request, who: PageUser, done: str = "") -> HTMLResponse:
    require_admin(who)
    return page(request, "admin.html", {**_context(who), "done": DONE.get(done)}, who=who)


@router.post("/admin/users", dependencies=[CsrfChecked])
def create_user(
    request: Request,
    who: PageUser,
    username: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "viewer",
) -> Response:
    require_admin(who)
    try:
        body = api_admin.NewUser.model_validate(
            {"username": username.strip(), "email": email.strip(), "password": password,
             "role": role}
        )  # fmt: skip
    except ValidationError as error:
        fields = ", ".join(sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]}))
        message = f"check these fields: {fields} (passwords need 12 characters)"
        raise ApiError(400, message) from error
    api_admin.create_user(who, body)
    return _back("created")


@router.post("/admin/users/{user_id}/role", dependencies=[CsrfChecked])
def set_role(who: PageUser, user_id: uuid.UUID, role: Annotated[Role, Form()]) -> Response:
    require_admin(who)
    api_admin.set_role(who, user_id, api_admin.RoleChange(role=role))
    return _back("role")


@router.post("/admin/users/{user_id}/deactivate", dependencies=[CsrfChecked])
def deactivate(who: PageUser, user_id: uuid.UUID) -> Response:
    require_admin(who)
    api_admin.deactivate(who, user_id)
    return _back("deactivated")


@router.post("/admin/users/{user_id}/reactivate", dependencies=[CsrfChecked])
def reactivate(who: PageUser, user_id: uuid.UUID) -> Response:
    require_admin(who)
    api_admin.reactivate(who, user_id)
    return _back("reactivated")


@router.post("/admin/keys/{key_id}/revoke", dependencies=[CsrfChecked])
def revoke_key(who: PageUser, key_id: uuid.UUID) -> Response:
    require_admin(who)
    api_admin.revoke_key(who, key_id)
    return _back("revoked")


@router.post("/admin/keys", dependencies=[CsrfChecked])
def create_key(
    request: Request,
    who: PageUser,
    name: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "read",
) -> HTMLResponse:
    """A key for the signed-in admin, shown once on the page that answers (never stored)."""
    require_admin(who)
    try:
        body = api_keys.NewKey.model_validate({"name": name.strip(), "scope": scope})
    except ValidationError as error:
        raise ApiError(400, "give the key a name (and a known scope)") from error
    # The API's function: the session's own scope bounds the keys it may mint.
    new_key = json.loads(bytes(api_keys.create(body, who).body))
    return page(request, "admin.html", {**_context(who), "new_key": new_key}, who=who,
                status_code=201)  # fmt: skip
