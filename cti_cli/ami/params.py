"""A configured AMI server as the parameters to log in with: one mapping for `cti agent`,
`cti watch` and `cti enable`, so a new server setting reaches all three or none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti_cli.ami.reconnect import ConnectParams

if TYPE_CHECKING:  # the config model (pydantic) is the caller's to import
    from cti_cli.config import ServerConfig

__all__ = ["missing_setting", "server_params"]


def missing_setting(server: ServerConfig) -> str | None:
    """The first connection setting still empty (`host`, `login`, `password`), if any."""
    if not server.host:
        return "host"
    if not server.login:
        return "login"
    if not server.password.get_secret_value():
        return "password"
    return None


def server_params(server: ServerConfig) -> ConnectParams | None:
    """How to log in to ``server``; None while its connection block is incomplete."""
    if missing_setting(server) is not None:
        return None
    return ConnectParams(
        host=server.host,
        port=server.port,
        username=server.login,
        secret=server.password.get_secret_value(),
        tls=server.tls,
        cafile=server.cafile,
        auth=server.auth,
        timeout=server.timeout,
    )
