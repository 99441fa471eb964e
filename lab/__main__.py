"""`python -m lab up|down|status|build`: the lab by hand, on the default ports.

up starts Asterisk + SIPp phones detached (they keep running after this command) and prints how
to connect; down stops them; status tells whether the lab is up. The lab's AMI logins are
throwaway lab credentials, so printing them is intended.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from lab import Lab, LabUnavailable, default_state_dir
from lab.amiraw import RawAmi
from lab.rootfs import ensure_rootfs


def _attach() -> Lab | None:
    state_dir = default_state_dir()
    if not (state_dir / "state.json").is_file():
        return None
    return Lab.attach(state_dir)


def _describe(lab: Lab) -> str:
    i = lab.info
    phones = ", ".join(f"{ext} udp/{p.port} ({p.mode})" for ext, p in lab.phones.items())
    lines = [
        f"AMI        {i.ami_host}:{i.ami_port}  user {i.ami_user} / {i.ami_secret}",
        f"AMI TLS    localhost:{i.ami_tls_port}  cafile {i.tls_ca_file}",
        f"AMI (no call events)  user {i.ami_limited_user} / {i.ami_limited_secret}",
        f"SIP        udp 127.0.0.1:{i.sip_port}  "
        "(dial 200 queue, 300 ring group, 210/310 FreePBX-style, 101-103)",
        f"phones     {phones}",
        f"CDR        mysql://{i.mysql_host}:{i.mysql_port}/{i.mysql_db} table {i.cdr_table}"
        f"  reader {i.mysql_reader_user} / {i.mysql_reader_password}",
        f"MariaDB    the lab's own, admin: mariadb -S {lab.database.server.unix_socket} -u root",
        f"dbaccess   {i.dbaccess_file}",
        f"recordings {i.recordings_dir}",
        f"logs       {lab.layout.host('log')}  (SIPp: {lab.layout.host('sipp')})",
        f"CLI        chroot {lab.layout.root} asterisk -C {lab.asterisk.conf} -r",
    ]
    return "\n".join(lines)


def cmd_up(_: argparse.Namespace) -> int:
    lab = _attach()
    if lab is not None and lab.running():
        print("lab is already up\n" + _describe(lab))
        return 0
    if lab is not None:
        lab.stop()  # leftovers of a lab whose Asterisk died
    started = time.monotonic()
    lab = Lab.start(state_dir=default_state_dir(), fixed_ports=True, detached=True)
    print(f"lab up in {time.monotonic() - started:.1f}s (stop with: python -m lab down)")
    print(_describe(lab))
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    lab = _attach()
    if lab is None:
        print("lab is not up")
        return 0
    lab.stop()
    # everything the lab made goes: its MariaDB (stopped by stop()), CDRs, recordings, logs
    shutil.rmtree(lab.layout.host_dir, ignore_errors=True)
    print("lab stopped and removed")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    lab = _attach()
    if lab is None:
        print("lab is not up")
        return 3
    if not lab.running():
        print("lab is down (Asterisk not running; `python -m lab down` cleans up)")
        return 3
    channels = lab.asterisk.active_channels()
    print(f"lab is up, {channels} active channels\n" + _describe(lab))
    return 0


def _running_lab() -> Lab:
    lab = _attach()
    if lab is None or not lab.running():
        raise LabUnavailable("lab is not up; start it with: python -m lab up")
    return lab


def cmd_call(args: argparse.Namespace) -> int:
    lab = _running_lab()
    ami = RawAmi(lab.info.ami_host, lab.info.ami_port)
    try:
        ami.login(lab.info.ami_user, lab.info.ami_secret)
        lab.call(
            args.dialed, caller=args.caller, caller_name=args.name, talk=args.talk,
            cancel_after=args.cancel_after,
        )  # fmt: skip
        uniqueid = caller_uniqueid(ami, args.caller)
    finally:
        ami.close()
    print(f"call to {args.dialed} from {args.caller}: uniqueid {uniqueid or '?'}", flush=True)
    lab.sipp.wait_calls(timeout=args.talk + 120)
    print(f"call {uniqueid or 'to ' + args.dialed} done"
          + (f" (cti recordings {uniqueid})" if uniqueid else ""))  # fmt: skip
    return 0


def caller_uniqueid(ami: RawAmi, caller: str, timeout: float = 10.0) -> str | None:
    """The Uniqueid of the caller's channel: the first Newchannel from `caller` (the key of
    the call's CDR rows, what `cti recordings` takes)."""
    for event in ami.events(time.monotonic() + timeout):
        if event.get("Event") == "Newchannel" and event.get("CallerIDNum") == caller:
            return event.get("Uniqueid")
    return None


def cmd_phone(args: argparse.Namespace) -> int:
    lab = _running_lab()
    lab.phone(args.ext, args.mode, answer_after=args.answer_after)
    print(f"phone {args.ext}: {args.mode}")
    return 0


def cmd_build(_: argparse.Namespace) -> int:
    started = time.monotonic()
    root = ensure_rootfs()
    print(f"rootfs ready: {root} ({time.monotonic() - started:.1f}s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("up", cmd_up, "start the lab on the default ports and print connection info"),
        ("down", cmd_down, "stop the hand-run lab"),
        ("status", cmd_status, "is the hand-run lab up? (exit 3 if not)"),
        ("build", cmd_build, "build the Debian sid rootfs (cached) without starting anything"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    call = sub.add_parser("call", help="place one SIPp call into the hand-run lab and wait")
    call.add_argument(
        "dialed",
        help="200 (queue), 300 (ring group), 210 / 310 (the same, FreePBX-style "
        "with Local channels), 101..103",
    )
    call.add_argument("--caller", default="+79161234567")
    call.add_argument(
        "--name", default="", help="caller display name, UTF-8 (default: none, number only)"
    )
    call.add_argument("--talk", type=float, default=5.0, help="seconds of talk after answer")
    call.add_argument("--cancel-after", type=float, default=None, help="abandon after N s")
    call.set_defaults(func=cmd_call)
    phone = sub.add_parser("phone", help="switch an operator phone's behaviour")
    phone.add_argument("ext", choices=("101", "102", "103"))
    phone.add_argument("mode", choices=("answer", "noanswer", "busy"))
    phone.add_argument("--answer-after", type=float, default=1.0)
    phone.set_defaults(func=cmd_phone)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LabUnavailable as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
