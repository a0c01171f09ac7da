"""`teleai keys`: API keys for programs (create prints the key once, on its own line)."""

from __future__ import annotations

import json
import uuid
from contextlib import AbstractContextManager
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from interfaces.cli.common import app, check_services, db_url, die, out, shown

keys_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _unit() -> AbstractContextManager[Session]:
    """One unit of work as the owner (the operator CLI manages every user's keys)."""
    from db.engine import get_engine, unit_of_work

    return unit_of_work(get_engine(db_url()))


def _owner(session: Session, login: str) -> uuid.UUID:
    from db.users import get_active_user

    user = get_active_user(session, login)
    if user is None:
        die(f"no active user '{login}'")
    return user.id


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="Owner: username or email.")],
    scope: Annotated[str, typer.Option(help="read, write or admin.")] = "read",
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli",
) -> None:
    """Create an API key and print it once (stdout: the key alone on the last line)."""
    from db.api_keys import create_key
    from db.models import KeyScope

    if scope not in {s.value for s in KeyScope}:
        die(f"--scope must be read, write or admin, not '{scope}'")
    check_services()
    with _unit() as session:
        owner = _owner(session, user)
        if scope == KeyScope.ADMIN.value:
            from db.models import User

            account = session.get(User, owner)
            if account is None or account.role != "admin":
                die("only admin users get admin-scope keys")
        try:
            row, key = create_key(session, owner, name=name, scope=scope)
        except ValueError as error:
            die(str(error))
        key_id = row.id
    typer.echo(
        f"created API key {key_id} ({scope}) for {user}; store it now, it is not shown again:",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Also revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """API keys (never their values): id, owner, name, prefix, scope, last use."""
    from db.api_keys import list_keys
    from db.models import User

    check_services()
    with _unit() as session:
        owner = _owner(session, user) if user is not None else None
        rows = list_keys(session, owner, include_revoked=include_revoked)
        names = {
            u.id: u.username
            for u in session.query(User).filter(User.id.in_({r.user_id for r in rows}))
        }
        items = [
            {
                "id": str(r.id),
                "user": names.get(r.user_id, str(r.user_id)),
                "name": r.name,
                "prefix": r.key_prefix,
                "scope": r.scope,
                "created_at": r.created_at.isoformat(),
                "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
                "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
            }
            for r in rows
        ]
    if as_json:
        for item in items:
            typer.echo(json.dumps(item))
        return
    table = Table("id", "user", "name", "prefix", "scope", "last used", "revoked")
    for item in items:
        table.add_row(
            item["id"], shown(item["user"]), shown(item["name"]), item["prefix"], item["scope"],
            item["last_used_at"] or "-", item["revoked_at"] or "-",
        )  # fmt: skip
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see keys list).")],
) -> None:
    """Revoke an API key (final: it stops working at once)."""
    from db.api_keys import revoke_key

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        die(f"'{key_id}' is not a key id (a UUID)")
    check_services()
    with _unit() as session:
        if not revoke_key(session, parsed):
            die(f"no live API key {key_id}")
    out.print(f"revoked API key {key_id}")
