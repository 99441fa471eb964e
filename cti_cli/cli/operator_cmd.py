"""`cti operator link LOGIN [--rotate]`: an operator's personal screen-pop page URL."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cti_cli.cli.common import EXIT_FAILURE, EXIT_USAGE, err_console, fail, load_config

operator_app = typer.Typer(
    help="Operators' personal pages, where the agent shows their screen pops.",
    no_args_is_help=True,
)


@operator_app.command("link")
def link(
    ctx: typer.Context,
    login: Annotated[str, typer.Argument(help="The operator's login, as in [[teams.members]].")],
    rotate: Annotated[
        bool,
        typer.Option("--rotate", help="Make a new link; the old one stops working at once."),
    ] = False,
) -> None:
    """Print LOGIN's page URL alone on one line (the same URL every time, until --rotate).

    Works without the agent running: it reads the config and the agent's state folder."""
    from cti_cli.agent.operators import TokenStore, TokenStoreError, page_url, team_logins
    from cti_cli.agent.service import state_dir

    config = load_config(ctx)
    if login not in team_logins(config.teams):
        fail(
            f"{login!r} is in no responsible team, so it gets no screen pops and no page; "
            f"add it first: cti teams member NAME --login {login} --ext 101",
            EXIT_USAGE,
        )
    store = TokenStore(state_dir(config) / "operators.json")
    try:
        token = store.token(login, rotate=rotate)
    except TokenStoreError as exc:
        fail(str(exc), EXIT_FAILURE)
    sys.stdout.write(page_url(config.agent.public_url, config.agent.listen, token) + "\n")
    sys.stdout.flush()
    if rotate:
        err_console.print(
            f"cti: new link for {login}; the old one no longer works (open pages get 401)",
            markup=False,
            soft_wrap=True,
        )
