"""`cti teams …`: the responsible operator teams — only their members get screen pops."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cti_cli.cli.common import (
    EXIT_USAGE,
    console,
    fail,
    load_config,
    load_config_for_edit,
    save_config,
    say,
)

if TYPE_CHECKING:
    from cti_cli.config import Config, Team

teams_app = typer.Typer(
    help="Responsible operator teams and their members' extensions.", no_args_is_help=True
)


def _team_or_fail(config: Config, name: str) -> Team:
    team = config.team(name)
    if team is None:
        known = ", ".join(repr(t.name) for t in config.teams) or "none yet"
        fail(f"no team named {name!r} (teams: {known}); create it with cti teams add", EXIT_USAGE)
    return team


@teams_app.command("list")
def list_teams(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the teams, their members and extensions."""
    config = load_config(ctx)
    if json_out:
        print(json.dumps([t.model_dump() for t in config.teams], ensure_ascii=False, indent=2))
        return
    if not config.teams:
        say("no teams; add one with: cti teams add NAME")
        return
    from cti_cli.cli.show import teams_table

    console.print(teams_table(config))


@teams_app.command("add")
def add_team(ctx: typer.Context, name: str) -> None:
    """Create a team."""
    config = load_config_for_edit(ctx)
    if not name.strip():
        fail("a team name cannot be empty", EXIT_USAGE)
    if config.team(name):
        fail(f"team {name!r} already exists", EXIT_USAGE)
    from cti_cli.config import Team

    config.teams.append(Team(name=name))
    save_config(ctx, config)
    say(f"added team {name}")


@teams_app.command("remove")
def remove_team(ctx: typer.Context, name: str) -> None:
    """Delete a team and its member list."""
    config = load_config_for_edit(ctx)
    config.teams.remove(_team_or_fail(config, name))
    save_config(ctx, config)
    say(f"removed team {name}")


@teams_app.command("member")
def set_member(
    ctx: typer.Context,
    team_name: Annotated[str, typer.Argument(metavar="NAME")],
    login: Annotated[
        str, typer.Option("--login", metavar="LOGIN", help="The operator's service-desk login.")
    ],
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    ext: Annotated[
        list[str] | None,
        typer.Option("--ext", metavar="N", help="Phone extension (repeat for several)."),
    ] = None,
) -> None:
    """Add a member to a team, or update one (extensions given replace the old ones)."""
    from pydantic import ValidationError

    from cti_cli.config import Member

    config = load_config_for_edit(ctx)
    team = _team_or_fail(config, team_name)
    member = next((m for m in team.members if m.login == login), None)
    try:
        if member is None:
            if not ext:
                fail(
                    f"give the new member's extension: cti teams member {team_name!r} "
                    f"--login {login} --ext 101",
                    EXIT_USAGE,
                )
            member = Member(login=login, name=name or "", extensions=list(ext))
            team.members.append(member)
        else:
            if name is not None:
                member.name = name
            if ext:
                member.extensions = list(ext)
    except ValidationError as exc:
        fail(f"--ext: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", EXIT_USAGE)
    for other in config.teams:
        for m in other.members:
            clash = set(m.extensions) & set(member.extensions)
            if m is not member and clash:
                fail(
                    f"extension {sorted(clash)[0]} already belongs to {m.login} "
                    f"in team {other.name!r}",
                    EXIT_USAGE,
                )
    save_config(ctx, config)
    say(f"{member.login} in {team.name}: {', '.join(member.extensions)}")


@teams_app.command("unmember")
def remove_member(
    ctx: typer.Context,
    team_name: Annotated[str, typer.Argument(metavar="NAME")],
    login: Annotated[str, typer.Option("--login", metavar="LOGIN", help="The member's login.")],
) -> None:
    """Remove a member from a team."""
    config = load_config_for_edit(ctx)
    team = _team_or_fail(config, team_name)
    member = next((m for m in team.members if m.login == login), None)
    if member is None:
        fail(f"team {team_name!r} has no member with login {login!r}", EXIT_USAGE)
    team.members.remove(member)
    save_config(ctx, config)
    say(f"removed {login} from {team_name}")
