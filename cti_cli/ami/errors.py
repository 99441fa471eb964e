"""AMI error classes: one class per failure a user can fix differently.

Every message is a single line meant for the user (``cti enable`` prints it as is);
none of them ever contains the AMI secret.
"""

from __future__ import annotations


class AMIError(Exception):
    """Base class of every AMI failure; ``str(err)`` is a one-line user-facing message."""

    kind = "AMI error"  # what went wrong, in the words an admin searches for

    def describe(self) -> str:
        """`kind: message`, e.g. "connection refused: nothing accepts connections on …"."""
        return f"{self.kind}: {self}"


class ProtocolError(AMIError):
    """The peer sent bytes that are not AMI (or a message beyond the size bound)."""

    kind = "protocol error"


class ActionError(AMIError, ValueError):
    """An action could not be encoded (e.g. CR/LF in a header: AMI header injection)."""

    kind = "invalid action"


class ActionFailed(AMIError):
    """Asterisk answered an action with ``Response: Error``; ``.response`` is the reply."""

    kind = "action failed"

    def __init__(self, message: str, response: object = None) -> None:
        super().__init__(message)
        self.response = response


class ActionTimeout(AMIError, TimeoutError):
    """No reply to an action within its timeout (the connection may still be alive)."""

    kind = "no reply"


class NameNotResolved(AMIError):
    """The AMI host name does not resolve."""

    kind = "name not resolved"


class ConnectionRefused(AMIError):
    """Nothing listens on the AMI host:port (or a firewall rejects the connection)."""

    kind = "connection refused"


class HostUnreachable(AMIError):
    """No route to the AMI host or its network (EHOSTUNREACH/ENETUNREACH): routing, VPN, or a
    host that is down, not a closed port."""

    kind = "host unreachable"


class ConnectTimeout(AMIError):
    """No TCP connection, TLS handshake or banner within the timeout."""

    kind = "timeout"


class TLSError(AMIError):
    """TLS handshake or certificate verification failed."""

    kind = "TLS failure"


class NotAMIServer(AMIError):
    """The server answered, but its first line is not ``Asterisk Call Manager/...``."""

    kind = "not an AMI server"


class AuthenticationFailed(AMIError):
    """Asterisk rejected the AMI user name or secret."""

    kind = "authentication failed"


class PermissionDenied(AMIError):
    """The AMI user lacks a read/write class that cti needs."""

    kind = "permission denied"


class ConnectionLost(AMIError):
    """The connection closed or stopped answering (e.g. Ping unanswered)."""

    kind = "connection lost"


__all__ = [
    "AMIError",
    "ActionError",
    "ActionFailed",
    "ActionTimeout",
    "AuthenticationFailed",
    "ConnectTimeout",
    "ConnectionLost",
    "ConnectionRefused",
    "HostUnreachable",
    "NameNotResolved",
    "NotAMIServer",
    "PermissionDenied",
    "ProtocolError",
    "TLSError",
]
