"""Administration: users and database maintenance (the spec's maintenance queries)."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import IntegrityError

from interfaces.cli.common import app, check_services, db_app, die, err, out, shown, uow

users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")


NEW_PASSWORD_ENV = "TELEAI_NEW_PASSWORD"  # noqa: S105  # the variable's name, not a password


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument()],
    email: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="admin, manager, analyst or viewer.")] = "viewer",
    full_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    generate_password: Annotated[
        bool,
        typer.Option(
            "--generate-password", help="Make a random password and print it once (no prompt)."
        ),
    ] = False,
    password: Annotated[
        str | None,
        typer.Option(
            help="DEPRECATED: a password on the command line is visible to every local user "
            f"(ps, /proc); use the prompt or {NEW_PASSWORD_ENV}.",
        ),
    ] = None,
) -> None:
    """Create a user (argon2id password hash).

    The password is asked for with hidden input (typed twice). Scripts set the environment
    variable TELEAI_NEW_PASSWORD instead, or pass --generate-password for a random one that is
    printed once.
    """
    import os

    from db.users import create_user

    if password is not None:
        err.print(
            "[bold yellow]warning:[/] --password is deprecated: the password is visible to "
            f"every local user in `ps`; use the prompt or {NEW_PASSWORD_ENV}",
            highlight=False,
        )
    secret = password or os.environ.get(NEW_PASSWORD_ENV) or None
    if secret is None and generate_password:
        secret = secrets.token_urlsafe(16)
    elif secret is None:
        try:
            secret = typer.prompt(
                f"Password for {username}", hide_input=True, confirmation_prompt=True, err=True
            )
        except typer.Abort:  # end of input (no terminal, nothing piped)
            die(
                f"no password given: type it at the prompt, set {NEW_PASSWORD_ENV}, or pass "
                "--generate-password"
            )
    check_services()
    try:
        with uow() as session:
            user = create_user(
                session,
                email=email,
                username=username,
                password=secret,
                role=role,
                full_name=full_name,
            )
            user_id = user.id
    except IntegrityError as error:
        die(f"cannot create user: {str(error.orig).splitlines()[0]}")
    except ValueError as error:
        die(str(error))
    out.print(f"created {shown(username)} ({shown(role)}) id {user_id}")
    if generate_password and password is None and NEW_PASSWORD_ENV not in os.environ:
        out.print(f"password (shown once): {secret}", highlight=False)


@users_app.command("list")
def users_list(
    include_deleted: Annotated[bool, typer.Option(help="Also soft-deleted users.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """All users with their activity totals."""
    from db.monitoring import user_activity
    from db.users import list_users

    check_services()
    with uow() as session:
        users = list_users(session, include_deleted=include_deleted)
        activity = {a.user_id: a for a in user_activity(session)}
        if as_json:
            rows = [
                {
                    "id": str(u.id),
                    "username": u.username,
                    "email": u.email,
                    "role": u.role,
                    "is_active": u.is_active,
                    "deleted": u.deleted_at is not None,
                    "total_files": activity[u.id].total_files if u.id in activity else 0,
                }
                for u in users
            ]
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table(
            "username",
            "email",
            "role",
            "active",
            "files",
            "transcriptions",
            "analyses",
            "last upload",
            "last login",
        )
        for u in users:
            a = activity.get(u.id)
            table.add_row(
                shown(u.username),
                shown(u.email),
                shown(u.role),
                "deleted" if u.deleted_at else ("yes" if u.is_active else "no"),
                str(a.total_files if a else 0),
                str(a.total_transcriptions if a else 0),
                str(a.total_analyses if a else 0),
                a.last_upload_at.isoformat(timespec="minutes") if a and a.last_upload_at else "",
                u.last_login_at.isoformat(timespec="minutes") if u.last_login_at else "",
            )
    out.print(table)


def _user_id(login: str) -> uuid.UUID:
    from db.users import get_active_user

    with uow() as session:
        user = get_active_user(session, login)
        if user is None:
            die(f"no active user '{login}'")
        return user.id


@users_app.command("deactivate")
def users_deactivate(login: Annotated[str, typer.Argument(help="Username or email.")]) -> None:
    """Deactivate a user (and revoke their sessions)."""
    from db.users import deactivate_user

    check_services()
    user_id = _user_id(login)
    with uow() as session:
        deactivate_user(session, user_id)
    out.print(f"deactivated {shown(login)}")


@users_app.command("set-role")
def users_set_role(
    login: Annotated[str, typer.Argument(help="Username or email.")],
    role: Annotated[str, typer.Argument(help="admin, manager, analyst or viewer.")],
) -> None:
    """Change a user's role."""
    from db.users import set_role

    check_services()
    user_id = _user_id(login)
    try:
        with uow() as session:
            set_role(session, user_id, role)
    except ValueError as error:
        die(str(error))
    out.print(f"{shown(login)} is now {shown(role)}")


@users_app.command("defaults")
def users_defaults(
    login: Annotated[str, typer.Argument(help="Username or email.")],
    vocabulary: Annotated[
        list[str] | None,
        typer.Option(help="Default terms for every call: --vocabulary TERM [TERM ...]."),
    ] = None,
    channel_labels: Annotated[
        str | None, typer.Option(help="Default speaker label per channel, e.g. agent,customer.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the stored defaults.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show or set a user's call-audio defaults (merged into each of their jobs' options)."""
    from pipeline.options import InvalidOptions
    from pipeline.preferences import set_user_defaults, user_defaults

    check_services()
    user_id = _user_id(login)
    try:
        with uow() as session:
            if vocabulary is None and channel_labels is None and not clear:
                stored = user_defaults(session, user_id)
            else:
                stored = set_user_defaults(
                    session,
                    user_id,
                    vocabulary=vocabulary,
                    channel_labels=channel_labels,
                    clear=clear,
                )
    except InvalidOptions as error:
        die(error.message)
    if as_json:
        typer.echo(json.dumps(stored))
        return
    out.print(
        f"{shown(login)}: vocabulary {', '.join(stored.get('vocabulary', [])) or '-'}; "
        f"channel labels {', '.join(stored.get('channel_labels', [])) or '-'}",
        highlight=False,
    )


@db_app.command("refresh-analytics")
def db_refresh_analytics() -> None:
    """REFRESH MATERIALIZED VIEW CONCURRENTLY file_processing_analytics."""
    from db.monitoring import refresh_analytics

    check_services()
    with uow() as session:
        refresh_analytics(session)
    out.print("file_processing_analytics refreshed")


@db_app.command("stats")
def db_stats() -> None:
    """The spec's maintenance queries: table sizes and index usage."""
    from db.monitoring import index_usage, table_sizes

    check_services()
    with uow() as session:
        sizes = table_sizes(session)
        usage = index_usage(session)
    size_table = Table("table", "size", title="table sizes")
    for s in sizes:
        size_table.add_row(f"{s.schemaname}.{s.tablename}", s.size)
    usage_table = Table(
        "table", "index", "scans", "tuples read", "tuples fetched", title="index usage"
    )
    for u in usage:
        usage_table.add_row(
            u.tablename, u.indexname, str(u.idx_scan), str(u.idx_tup_read), str(u.idx_tup_fetch)
        )
    out.print(size_table)
    out.print(usage_table)
