"""Acting as an application user under row-level security, and the login roles that do it.

Migration 002 isolates tenants with policies that read the acting user from
``current_app_user_id()``. Since migration 005 the application role cannot *name* that user: it
hands the database the credential the request presented (:func:`act_with`, or
:func:`acting_with` for a whole unit of work), and the database hashes it and looks it up (a
live session token or an unrevoked API key of an active user). A compromised API process
therefore still needs a valid credential per user. The setting is transaction-local on purpose:
a pooled connection handed to the next request carries no identity, so it sees nothing until
that request presents its own credential.

Before anyone is authenticated there is no credential; a login is the one narrow path
(:func:`open_session`): the database hands out the stored hash's salt and parameters (never the
digest; a decoy for unknown names), the offered password is hashed with them here, and the
database opens a session only when that equals the stored hash.

Superusers and BYPASSRLS roles (the schema owner, the operator CLI, tests) ignore all of this;
for them :func:`act_as` still names a user, which only labels their audit rows.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import bcrypt
import psycopg
from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError
from argon2.low_level import hash_secret
from psycopg import sql
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from db.auth_sessions import MAX_USER_AGENT_CHARS, TOKEN_BYTES
from db.engine import unit_of_work

APP_ROLE: Final = "teleai_app"
WORKER_ROLE: Final = "teleai_worker"
# Migration 004: processes that accept files (the drop folder, workers.submit with a login of
# its own) read accounts and files and insert files; only they set where a stored copy is.
INTAKE_ROLE: Final = "teleai_intake"
GROUP_ROLES: Final = frozenset({APP_ROLE, WORKER_ROLE, INTAKE_ROLE})
USER_SETTING: Final = "app.current_user_id"
CREDENTIAL_SETTING: Final = "app.credential"


def act_with(session: Session | Connection, credential: str) -> None:
    """Present ``credential`` (session token or API key) until the current transaction ends.

    The database derives the acting user from it (migration 005); an unknown, revoked or
    expired credential acts as nobody and sees no rows.
    """
    session.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": CREDENTIAL_SETTING, "value": credential},
    )


@contextmanager
def acting_with(engine: Engine, credential: str) -> Iterator[Session]:
    """One unit of work (commit on success, rollback on error) with ``credential``."""
    with unit_of_work(engine) as session:
        act_with(session, credential)
        yield session


def act_as(session: Session | Connection, user_id: uuid.UUID) -> None:
    """Label the current transaction of a BYPASSRLS caller (the owner, the operator CLI) as
    ``user_id``, for the audit log. Members of teleai_app cannot act as a user this way (005):
    they present a credential with :func:`act_with`.
    """
    session.execute(
        text("SELECT set_config(:name, :value, true)"),
        {"name": USER_SETTING, "value": str(user_id)},
    )


def current_user_id(session: Session | Connection) -> uuid.UUID | None:
    """The acting user of the current transaction, if one was named."""
    value = session.execute(text("SELECT current_app_user_id()")).scalar_one()
    return value if isinstance(value, uuid.UUID) else None


@dataclass(frozen=True)
class OpenedSession:
    """A login that succeeded: the user and the new session's raw token (shown only once)."""

    user_id: uuid.UUID
    token: str


def _proof(prefix: str, digest_chars: int, password: str) -> str | None:
    """``password`` hashed with the salt and parameters of ``prefix`` (argon2 or bcrypt)."""
    if prefix.startswith("$argon2"):
        try:
            params = extract_parameters(prefix + "$" + "A" * digest_chars)
            salt_b64 = prefix.rsplit("$", 1)[1]
            salt = base64.b64decode(salt_b64 + "=" * (-len(salt_b64) % 4))
        except (InvalidHashError, ValueError):
            return None
        hash_len = digest_chars * 3 // 4
        encoded = hash_secret(
            password.encode("utf-8", "surrogatepass"),
            salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=hash_len,
            type=Type(params.type),
            version=params.version,
        )
        return encoded.decode("ascii")
    if prefix.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            # bcrypt hashed only the first 72 bytes (see db.users).
            return bcrypt.hashpw(password.encode("utf-8")[:72], prefix.encode("ascii")).decode()
        except ValueError:
            return None
    return None


def open_session(
    session: Session | Connection,
    login: str,
    password: str,
    *,
    ip_address: str | None,
    user_agent: str | None,
    ttl_seconds: float,
    idle_seconds: float | None = None,
) -> OpenedSession | None:
    """Log in through the database (migration 005): a new session, or None when refused.

    Works for the application role, which may not read accounts: the database compares the
    hash computed here with the stored one. Unknown names cost the same hashing (decoy salt).
    ``idle_seconds`` is the session's idle timeout, which the database enforces from then on
    (migration 009): the credential stops working once unused for that long.
    """
    if not login or "\x00" in login or "\x00" in password or not password:
        return None
    row = session.execute(
        text("SELECT prefix, digest_chars FROM app_password_salt(:login)"), {"login": login}
    ).one()
    proof = _proof(row.prefix, row.digest_chars, password)
    if proof is None:
        return None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    address = str(ipaddress.ip_address(ip_address)) if ip_address else None
    agent = user_agent.replace("\x00", "")[:MAX_USER_AGENT_CHARS] if user_agent else None
    user_id = session.execute(
        text(
            "SELECT app_open_session(:login, :proof, :token, CAST(:ip AS inet), :agent, "
            "make_interval(secs => :ttl), make_interval(secs => :idle))"
        ),
        {
            "login": login,
            "proof": proof,
            "token": token,
            "ip": address,
            "agent": agent,
            "ttl": ttl_seconds,
            "idle": idle_seconds,
        },
    ).scalar_one()
    if not isinstance(user_id, uuid.UUID):
        return None
    return OpenedSession(user_id, token)


def create_login_role(
    admin_conn: psycopg.Connection, name: str, password: str, member_of: str = APP_ROLE
) -> None:
    """Create a LOGIN role that inherits ``member_of`` (one of :data:`GROUP_ROLES`).

    ``admin_conn`` needs CREATEROLE. The password is SCRAM-hashed by libpq on this side, so
    the plain text never reaches the server (nor its statement log).
    """
    if member_of not in GROUP_ROLES:
        raise ValueError(f"member_of must be one of {sorted(GROUP_ROLES)}, not {member_of!r}")
    if not password:
        raise ValueError("password must not be empty")
    verifier = admin_conn.pgconn.encrypt_password(
        password.encode(), name.encode(), b"scram-sha-256"
    ).decode()
    admin_conn.execute(
        sql.SQL(
            "CREATE ROLE {name} LOGIN PASSWORD {verifier} NOSUPERUSER NOBYPASSRLS NOCREATEDB "
            "NOCREATEROLE NOREPLICATION INHERIT IN ROLE {group}"
        ).format(
            name=sql.Identifier(name),
            verifier=sql.Literal(verifier),
            group=sql.Identifier(member_of),
        )
    )


def ensure_login_role(
    admin_conn: psycopg.Connection, name: str, password: str, member_of: str
) -> bool:
    """Make ``name`` a LOGIN role in ``member_of`` with ``password``; True when it was created.

    For deployments (``teleai db upgrade --login-role``): run at every start, it creates the role
    the first time and afterwards sets the password again (so rotating a secret is a restart)
    and the membership. A role of that name that is a superuser or bypasses row-level security
    is refused rather than used: the services logging in with it would ignore every policy.
    """
    if member_of not in GROUP_ROLES:
        raise ValueError(f"member_of must be one of {sorted(GROUP_ROLES)}, not {member_of!r}")
    if not password:
        raise ValueError(f"no password for the login role {name}")
    found = admin_conn.execute(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)
    ).fetchone()
    if found is None:
        create_login_role(admin_conn, name, password, member_of=member_of)
        return True
    if found[0]:
        raise ValueError(f"the role {name} is a superuser or bypasses row-level security")
    verifier = admin_conn.pgconn.encrypt_password(
        password.encode(), name.encode(), b"scram-sha-256"
    ).decode()
    ident = sql.Identifier(name)
    admin_conn.execute(
        sql.SQL("ALTER ROLE {} LOGIN PASSWORD {} INHERIT").format(ident, sql.Literal(verifier))
    )
    admin_conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), ident))
    return False


def drop_login_role(admin_conn: psycopg.Connection, name: str) -> None:
    """Drop a login role made by :func:`create_login_role` (it must have no sessions left)."""
    admin_conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
