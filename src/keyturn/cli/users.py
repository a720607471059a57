"""``keyturn users``: the host operator manages accounts without HTTP.

Every command goes through the same service methods as the admin API (the
last-administrator rule, lock kinds and revocations come with them) acting as the host
operator (``operator_principal``), audited as ``operator.*``.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from keyturn.adapters import build_adapters
from keyturn.app import build_services
from keyturn.cli.common import ensure_schema, settings_or_exit
from keyturn.cli.progress import Advance, progress
from keyturn.config import Settings
from keyturn.domain import ClientInfo, Principal, User, operator_principal, utcnow
from keyturn.errors import KeyturnError, NotFound
from keyturn.services.admin import AdminUserService
from keyturn.services.registry import Services

users_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Manage accounts.")

OPERATOR = operator_principal()
# Audit rows of the command line name no address; the agent says where the action came from.
CLI = ClientInfo(ip=None, user_agent="keyturn-cli")
PAGE = 200
T = TypeVar("T")
# One admin-service action on a user: lock_user, unlock_user, reset_password, delete_user.
ActOn = Callable[[Principal, uuid.UUID, ClientInfo], Awaitable[None]]

UserArg = Annotated[str, typer.Argument(metavar="USER", help="The account's id or email")]


def stdin_is_terminal() -> bool:
    """Whether a person can answer a prompt (a function so tests can stand in for one)."""
    return sys.stdin.isatty()


def _run(settings: Settings, job: Callable[[Services], Awaitable[T]]) -> T:
    """Runs ``job`` with the services; a refusal (last admin, no such user...) exits 1."""

    async def go() -> T:
        adapters = build_adapters(settings)
        try:
            return await job(build_services(settings, adapters))
        finally:
            await adapters.close()

    try:
        return asyncio.run(go())
    except KeyturnError as exc:
        typer.echo(f"error ({exc.code}): {exc.detail}", err=True)
        raise typer.Exit(1) from exc


async def _resolve(services: Services, who: str) -> User:
    """The account named by its id or (exact, case-insensitive) email."""
    try:
        return await services.admin_users.get_user(OPERATOR, uuid.UUID(who))
    except ValueError:
        pass
    page = await services.admin_users.list_users(OPERATOR, q=who, limit=PAGE, cursor=None)
    for user in page.items:
        if user.email.lower() == who.lower():
            return user
    raise NotFound("No such user.")


def _state(user: User) -> str:
    if user.disabled:
        return "disabled"
    return "locked" if user.locked(utcnow()) else "active"


def _row(user: User) -> str:
    verified = "yes" if user.email_verified else "no"
    roles = ",".join(user.roles) or "-"
    return f"{user.id}  {_state(user):8}  {verified:8}  {roles:12}  {user.email}"


@users_app.command("list")
def users_list(
    query: Annotated[
        str | None, typer.Option("--query", "-q", help="Prefix of the email or name")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many accounts (default: all)")
    ] = None,
) -> None:
    """List accounts in email order: id, state, email verified, roles, email."""
    settings = settings_or_exit()
    ensure_schema(settings)
    typer.echo(f"{'id':36}  {'state':8}  {'verified':8}  {'roles':12}  email")
    with progress("listing accounts", "accounts") as advance:
        _run(settings, lambda services: _list(services, query, limit, advance))


async def _list(services: Services, query: str | None, limit: int | None, advance: Advance) -> None:
    cursor: str | None = None
    shown = 0
    while limit is None or shown < limit:
        size = PAGE if limit is None else min(PAGE, limit - shown)
        page = await services.admin_users.list_users(OPERATOR, q=query, limit=size, cursor=cursor)
        for user in page.items:
            typer.echo(_row(user))
        shown += len(page.items)
        advance(len(page.items))
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


@users_app.command("show")
def users_show(who: UserArg) -> None:
    """Show one account."""
    settings = settings_or_exit()
    ensure_schema(settings)
    user = _run(settings, lambda services: _resolve(services, who))
    locked_until = user.locked_until.isoformat(timespec="seconds") if user.locked_until else "-"
    for label, value in (
        ("id", str(user.id)),
        ("email", user.email),
        ("email verified", "yes" if user.email_verified else "no"),
        ("name", user.name or "-"),
        ("roles", ", ".join(user.roles) or "-"),
        ("state", _state(user)),
        ("locked until", locked_until),
        ("password set", "yes" if user.password_hash else "no"),
        ("created", user.created_at.isoformat(timespec="seconds")),
    ):
        typer.echo(f"{label + ':':16}{value}")


def _act_on(who: str, action: Callable[[AdminUserService], ActOn]) -> str:
    """Runs one admin-service action on ``who`` as the audited operator; the user's email."""
    settings = settings_or_exit()
    ensure_schema(settings)

    async def act(services: Services) -> User:
        user = await _resolve(services, who)
        await action(services.admin_users)(OPERATOR, user.id, CLI)
        return user

    return _run(settings, act).email


@users_app.command("lock")
def users_lock(who: UserArg) -> None:
    """Lock an account until it is unlocked, ending its sessions (never the last admin)."""
    email = _act_on(who, lambda admin: admin.lock_user)
    typer.echo(f"locked {email}; its sessions ended")


@users_app.command("unlock")
def users_unlock(who: UserArg) -> None:
    """Lift a lock (an administrator's or the failed-login one)."""
    typer.echo(f"unlocked {_act_on(who, lambda admin: admin.unlock_user)}")


@users_app.command("reset-password")
def users_reset_password(who: UserArg) -> None:
    """Clear the password, end every session and key, and mail a set-password link."""
    email = _act_on(who, lambda admin: admin.reset_password)
    typer.echo(f"password of {email} cleared; a set-password link is queued for it")


@users_app.command("delete")
def users_delete(
    who: UserArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete an account and end its sessions (never the last admin)."""
    if not yes:
        if not stdin_is_terminal():
            typer.echo("refusing to delete without confirmation: add --yes", err=True)
            raise typer.Exit(2)
        typer.confirm(f"Delete the account {who}?", abort=True)
    typer.echo(f"deleted {_act_on(who, lambda admin: admin.delete_user)}")


@users_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Email address of the new admin")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Create an account holding the built-in admin role (never pass a password as a flag)."""
    if not password_stdin and not stdin_is_terminal():
        # Without a terminal the hidden prompt cannot work; say what does.
        typer.echo(
            "no terminal to ask for the password: pipe it in with --password-stdin, e.g.\n"
            "  printf '%s\\n' \"$ADMIN_PASSWORD\" | "
            f"keyturn users create-admin --email {email} --password-stdin",
            err=True,
        )
        raise typer.Exit(2)
    settings = settings_or_exit()
    ensure_schema(settings)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _run(settings, lambda services: services.users.create_admin(email, password))
    typer.echo(f"admin created: {user.id}")
