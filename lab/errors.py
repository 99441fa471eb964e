"""The one exception the lab raises when it cannot run on this machine."""


class LabUnavailable(Exception):
    """Lab cannot start here; the message says why (not root, no debootstrap, build log tail...)."""
