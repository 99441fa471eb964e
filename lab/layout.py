"""Where an instance's files live: inside the chroot (Asterisk's view) and on the host.

Instances live under /var/lib/cti-lab/instances/<name> inside the rootfs. A state_dir outside
the rootfs is bind-mounted there for the instance's lifetime (Asterisk only sees the chroot).
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabUnavailable

INSTANCES = "var/lib/cti-lab/instances"


@dataclass(frozen=True)
class Layout:
    root: Path  # rootfs on the host
    chroot_dir: str  # instance dir as Asterisk sees it
    host_dir: Path  # the same dir as the host sees it (state_dir)
    mount_point: Path | None  # bind mount inside root, when host_dir is outside it

    @property
    def inside(self) -> Path:
        """Host path of the instance dir through the rootfs (== host_dir unless bind-mounted)."""
        return self.root / self.chroot_dir.lstrip("/")

    def host(self, rel: str) -> Path:
        return self.host_dir / rel

    def chroot(self, rel: str) -> str:
        return f"{self.chroot_dir}/{rel}"

    @property
    def state_file(self) -> Path:
        return self.host_dir / "state.json"


def instances_dir(root: Path) -> Path:
    return root / INSTANCES


def make_layout(root: Path, state_dir: Path) -> Layout:
    """Layout for a host state_dir; bind-mounts it into the rootfs if it lies outside."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    if state_dir.is_relative_to(root):
        return Layout(root, "/" + str(state_dir.relative_to(root)), state_dir, None)
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]
    point = instances_dir(root) / f"m-{digest}"
    point.mkdir(parents=True, exist_ok=True)
    if not is_mounted(point):
        done = subprocess.run(
            ["mount", "--bind", str(state_dir), str(point)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise LabUnavailable(f"cannot bind-mount {state_dir} into the chroot: {done.stderr}")
    return Layout(root, "/" + str(point.relative_to(root)), state_dir, point)


def unmount(layout: Layout) -> None:
    if layout.mount_point is not None and is_mounted(layout.mount_point):
        subprocess.run(["umount", str(layout.mount_point)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            layout.mount_point.rmdir()


def is_mounted(path: Path) -> bool:
    """From /proc/mounts: Path.is_mount() misses bind mounts within one filesystem."""
    target = str(path.resolve())
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)
