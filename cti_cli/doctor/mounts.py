"""Which mount a folder is on, from `/proc/self/mountinfo`: local disk or a network share.

A recordings folder is often an NFS or CIFS share of the PBX's monitor folder. When the share
is not mounted, the folder is still there — the empty mount point on the local disk — and
everything looks fine except that no recording is ever found. So the doctor names the file
system the folder really is on.

mountinfo lines (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE
SOURCE SUPEROPTIONS`; spaces, tabs, newlines and backslashes in paths are octal-escaped.
The mount of a path is the last-listed mount whose mount point is the longest prefix of it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre",
    "9p", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.rclone", "beegfs",
    "gpfs", "ocfs2", "gfs2",
})  # fmt: skip
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str
    source: str

    @property
    def network(self) -> bool:
        return self.fstype in NETWORK_TYPES or self.fstype.startswith("fuse.sshfs")

    def describe(self) -> str:
        if self.network:
            return f"network share ({self.fstype} {self.source}, mounted at {self.mount_point})"
        return f"local file system ({self.fstype} {self.source} at {self.mount_point})"


def _unescape(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def mount_of(path: Path, mounts: list[Mount] | None = None) -> Mount | None:
    """The mount `path` (symlinks resolved) is on; None when mountinfo cannot be read."""
    if mounts is None:
        try:
            mounts = parse_mountinfo(MOUNTINFO.read_text("utf-8", "replace"))
        except OSError:
            return None
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = real == point or real.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best
