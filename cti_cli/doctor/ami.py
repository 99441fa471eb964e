"""The AMI part of `cti doctor`: reachable, login, versions, read permissions, event volume.

One session does it all, logged in with events on, the way the agent logs in. Permissions are
read where `cti enable` reads them (`GetConfig manager.conf`, else `manager show user` through
`Command`): Asterisk filters events by `read=` silently, so a user without `call` would simply
see no call ever. Then the event stream is sampled: every event the call tracker has no use for
is noise (VarSet, Newexten, RTCP…), and when noise dominates, `eventfilter` lines for
manager.conf are suggested — in the structured syntax where Asterisk has it (18.25, 20.10,
21.5, 22.0 and later), else the legacy regular-expression form — unless Asterisk takes the AMI
event filters the agent asks for on its own session (`cti_cli.ami.filters`, write=system): then
the noise never reaches the agent and needs no manager.conf lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import Counter
from dataclasses import replace

from cti_cli.ami.check import read_classes_from_command, read_classes_from_config
from cti_cli.ami.client import AMIClient
from cti_cli.ami.errors import (
    ActionTimeout,
    AMIError,
    AuthenticationFailed,
    ConnectionRefused,
    ConnectTimeout,
    NameNotResolved,
    NotAMIServer,
    TLSError,
)
from cti_cli.ami.filters import FiltersPartlyApplied, NotAsked, filter_events
from cti_cli.ami.versions import advanced_filters, asterisk_from_ami, asterisk_release
from cti_cli.config import Config, ServerConfig
from cti_cli.doctor import Check, fail, ok, warn

NEEDED_CLASSES = ("call", "agent")
NOISE_WARN_SHARE = 0.5
NOISE_MIN_EVENTS = 20  # fewer events say nothing about the share
MAX_FILTER_LINES = 10
_SESSION_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth"})  # our own login's


def useful_events() -> frozenset[str]:
    """The events the call tracker reads; every other one is noise for cti."""
    from cti_cli.calls.tracker import CallTracker

    return frozenset(CallTracker()._handlers)


def structured_filters(asterisk_version: str) -> bool:
    """Whether this Asterisk takes `eventfilter(action(exclude),name(X))`."""
    return advanced_filters(asterisk_release(asterisk_version))


def filter_lines(noise: Counter[str], asterisk_version: str) -> list[str]:
    """`eventfilter` lines excluding the noisiest events (most of the noise, at most 10)."""
    useful = useful_events()
    names = re.compile(r"[A-Za-z0-9_]+")
    excludable = Counter({k: v for k, v in noise.items() if k not in useful and names.fullmatch(k)})
    total = sum(excludable.values())
    lines: list[str] = []
    covered = 0
    structured = structured_filters(asterisk_version)
    for name, count in excludable.most_common():
        if covered >= 0.95 * total or len(lines) >= MAX_FILTER_LINES:
            break
        if structured:
            lines.append(f"eventfilter(action(exclude),name({name})) =")
        elif not any(u.startswith(name) for u in useful):  # a regex: "Event: X" is a prefix
            lines.append(f"eventfilter = !Event: {name}")
        covered += count
    return lines


def _connect_fix(exc: AMIError, section: str = "[server]") -> str:
    if isinstance(exc, NameNotResolved):
        return f"Correct {section} host (cti configure --host …) or the DNS name."
    if isinstance(exc, ConnectionRefused):
        return (f"Start Asterisk, or correct {section} port; manager.conf needs enabled = yes "
                "and a bindaddr this host can reach.")  # fmt: skip
    if isinstance(exc, ConnectTimeout):
        return f"Check {section} host and port, and the firewalls between this host and the PBX."
    if isinstance(exc, TLSError):
        return (f"Set {section} cafile to the CA that signed the AMI certificate "
                "(cti configure --cafile), or check tls and the port.")  # fmt: skip
    if isinstance(exc, NotAMIServer):
        return f"Point {section} port at the AMI port (manager.conf port, usually 5038)."
    return f"Check the {section} settings (cti configure) and that Asterisk runs."


async def _read_classes(client: AMIClient, login: str) -> tuple[str, ...] | None:
    try:
        reply = await client.action(
            "GetConfig", {"Filename": "manager.conf", "Category": login}, check=False
        )
        if reply.get("Response") == "Success":
            classes = read_classes_from_config(reply)
            if classes is not None:
                return classes
        reply = await client.action(
            "Command", {"Command": f"manager show user {login}"}, check=False
        )
    except ActionTimeout:
        return None
    if reply.get("Response") in ("Success", "Follows"):
        return read_classes_from_command(reply)
    return None


async def _versions(client: AMIClient, config: Config) -> tuple[Check, str]:
    ami = client.ami_version or "?"
    exact = True
    try:
        reply = await client.action("CoreSettings", check=False)
    except ActionTimeout:
        reply = None
    asterisk = reply.get("AsteriskVersion") if reply is not None else None
    if reply is not None and reply.get("Response") == "Success" and asterisk:
        ami = reply.get("AMIversion") or ami
    else:
        asterisk, exact = asterisk_from_ami(ami), False
    if asterisk == "unknown":
        check = warn(
            "ami.versions", "Asterisk version",
            f"AMI {ami}: an Asterisk release cti does not know",
            "Check that cti supports this Asterisk (1.4 to 23 are known); calls may be misread.",
        )  # fmt: skip
        return check, ""
    detail = f"Asterisk {asterisk}, AMI {ami}"
    if not exact:
        detail += " (release guessed from the AMI version: CoreSettings is not allowed)"
    recorded = config.status.asterisk_version
    if recorded and exact and recorded != asterisk:
        detail += f"; cti enable saw {recorded} (run cti enable to record the new one)"
    return ok("ami.versions", "Asterisk version", detail), asterisk if exact else ""


def _permissions(login: str, classes: tuple[str, ...] | None) -> Check:
    name = "AMI permissions"
    if classes is None:
        return warn(
            "ami.permissions", name,
            f"cannot read AMI user {login!r}'s read= classes (GetConfig needs write=system or "
            "config, Command needs write=command)",
            f"Make sure read= in manager.conf [{login}] includes call and agent; doctor cannot "
            "check it with this user's write= classes.",
        )  # fmt: skip
    have = set(classes)
    shown = ",".join(classes) or "nothing"
    if "all" in have:
        return ok("ami.permissions", name, f"read={shown}: call and agent events arrive")
    missing = [c for c in NEEDED_CLASSES if c not in have]
    fix = (f"Add {','.join(missing)} to read= in manager.conf [{login}] "
           "and run 'manager reload' in the Asterisk CLI.")  # fmt: skip
    if "call" in missing:
        return fail(
            "ami.permissions",
            name,
            f"read={shown}: no call events reach cti, so it never sees a call",
            fix,
        )
    if missing:
        return warn("ami.permissions", name,
                    f"read={shown}: no agent events (queue members are followed through Dial "
                    "events only; legacy queue calls may be missed)", fix)  # fmt: skip
    return ok("ami.permissions", name, f"read={shown}: call and agent events arrive")


async def _sample(client: AMIClient, seconds: float) -> Counter[str]:
    counts: Counter[str] = Counter()

    async def consume() -> None:
        async for batch in client.event_batches():
            for message in batch:
                counts[message.get("Event") or "?"] += 1

    task = asyncio.create_task(consume())
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        task.result()  # ConnectionLost and friends
    for name in _SESSION_EVENTS:
        counts.pop(name, None)
    return counts


async def _filters(client: AMIClient) -> str | None:
    """Whether Asterisk takes the agent's AMI event filters (`filter_events`, asked on this
    session after sampling, so the sample saw the whole stream): None when it does, else why
    not."""
    try:
        return await filter_events(client, useful_events())
    except FiltersPartlyApplied as exc:
        return str(exc)
    except AMIError as exc:
        return f"could not ask Asterisk for AMI event filters ({exc.describe()})"


def _events(
    counts: Counter[str], seconds: float, asterisk: str, refused: str | None = None
) -> Check:
    """The noise share of the sample. ``refused``: why Asterisk will not filter the agent's
    session (None: it will, so the noise never reaches the agent and needs no manager.conf
    lines)."""
    name = "AMI events"
    total = sum(counts.values())
    filtered = "; Asterisk leaves the noise out of the agent's session (AMI event filters)"
    if total == 0:
        return ok("ami.events", name, f"no events in {seconds:g} s (no calls just now); "
                  "noise share not measured" + (filtered if refused is None else ""))  # fmt: skip
    useful = useful_events()
    noise = Counter({k: v for k, v in counts.items() if k not in useful})
    share = sum(noise.values()) / total
    top = ", ".join(f"{k} {v}" for k, v in noise.most_common(4))
    detail = (f"{total} events in {seconds:g} s ({total / seconds:.0f}/s), "
              f"{share:.0%} noise" + (f": {top}" if top else ""))  # fmt: skip
    if refused is None:
        return ok("ami.events", name, detail + filtered)
    if share > NOISE_WARN_SHARE and total >= NOISE_MIN_EVENTS:
        if isinstance(refused, NotAsked):  # this Asterisk cannot filter a session's events
            fix = ("Most events are of no use to cti: add these lines to the AMI user's section "
                   "in manager.conf, then run 'manager reload' (from Asterisk 18.25, 20.10 or "
                   "21.5 on, the agent asks Asterisk to leave them out of its session).")
        else:
            fix = ("Most events are of no use to cti: give the AMI user write=system in "
                   "manager.conf (the agent then asks Asterisk to leave them out of its "
                   "session), or add these lines to its section; then run 'manager reload'.")
        return warn("ami.events", name, f"{detail}; {refused}", fix,
                    filter_lines(noise, asterisk))  # fmt: skip
    return ok("ami.events", name, detail)


async def ami_checks(config: Config, sample: float) -> list[Check]:
    """AMI server, login, versions, permissions, events — stopping at the first failure; with
    `[[servers]]`, for every PBX (checked at the same time), each line naming its PBX."""
    if not config.servers:
        return await _server_checks(config, config.server, sample, "[server]")
    found = await asyncio.gather(*(
        _server_checks(config, entry, sample, f"[[servers]] {entry.name}")
        for entry in config.servers
    ))  # fmt: skip
    return [
        replace(check, name=f"{check.name} ({entry.name})")
        for entry, checks in zip(config.servers, found, strict=True)
        for check in checks
    ]


async def _server_checks(
    config: Config, server: ServerConfig, sample: float, section: str
) -> list[Check]:
    secret = server.password.get_secret_value()
    missing = [k for k, v in (("host", server.host), ("login", server.login),
                              ("password", secret)) if not v]  # fmt: skip
    if missing:
        return [fail(
            "ami.server", "AMI server",
            f"{section} {', '.join(missing)} not set; AMI not checked",
            "Set them with cti configure --host … --login … --password-stdin."
            if section == "[server]" else f"Set them in the config file's {section} entry.",
        )]  # fmt: skip
    where = f"{server.host}:{server.port}"
    client = AMIClient(reply_timeout=server.timeout, max_queued_events=200_000)
    out: list[Check] = []
    try:
        try:
            banner = await client.connect(server.host, server.port, tls=server.tls,
                                          cafile=server.cafile, timeout=server.timeout)  # fmt: skip
        except AMIError as exc:
            return [fail("ami.server", "AMI server",
                         f"{exc.describe()}; login, permissions and events not checked",
                         _connect_fix(exc, section))]  # fmt: skip
        except (OSError, ssl.SSLError) as exc:  # the cafile is missing or not PEM
            return [fail("ami.server", "AMI server",
                         f"{section} cafile {server.cafile}: "
                         f"{getattr(exc, 'strerror', None) or exc}; "
                         "login, permissions and events not checked",
                         f"Point {section} cafile at the PEM file of the CA that signed the AMI "
                         "certificate (cti configure --cafile PATH).")]  # fmt: skip
        how = "TLS, certificate verified" if server.tls else "TCP"
        out.append(ok("ami.server", "AMI server", f"{where} answers ({banner}, {how})"))
        try:
            await client.login(server.login, secret, auth=server.auth, events="on")
        except AMIError as exc:
            fix = (f"Correct {section} login or password (cti configure --password-stdin), or "
                   f"the permit= of [{server.login}] in manager.conf.")  # fmt: skip
            if not isinstance(exc, AuthenticationFailed):
                fix = f"Check the AMI user in manager.conf and the {section} settings."
            out.append(
                fail(
                    "ami.login",
                    "AMI login",
                    f"{exc.describe()}; permissions and events not checked",
                    fix,
                )
            )
            return out
        out.append(ok("ami.login", "AMI login", f"logged in as {server.login!r} ({server.auth})"))
        check, asterisk = await _versions(client, config)
        out.append(check)
        out.append(_permissions(server.login, await _read_classes(client, server.login)))
        try:
            counts = await _sample(client, sample)
        except AMIError as exc:
            out.append(fail("ami.events", "AMI events", f"the session broke while sampling "
                            f"events: {exc.describe()}", "Check the Asterisk log (manager) and "
                            "the network; the agent reconnects by itself."))  # fmt: skip
            return out
        out.append(_events(counts, sample, asterisk, await _filters(client)))
        with contextlib.suppress(AMIError):
            await client.logoff(timeout=2.0)
        return out
    except AMIError as exc:
        out.append(
            fail(
                "ami.session",
                "AMI session",
                exc.describe(),
                "Check the Asterisk log and the network, then run cti doctor again.",
            )
        )
        return out
    finally:
        await client.close()
