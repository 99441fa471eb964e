"""Operator pages: tokens, desk-link templates, the pop hub's resume semantics (units), then the
real agent process over HTTP — 401s, headers, and the event stream read by a real HTTP client,
fed by a recorded Asterisk 22 call through a fake AMI peer."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cti_cli import config as cfg
from cti_cli.agent import desk_links
from cti_cli.agent.operators import TokenStore, looks_like_token, page_url
from cti_cli.agent.pages import CSP
from cti_cli.agent.pophub import RING, PopHub
from cti_cli.agent.pops import Operator
from cti_cli.calls import Answered, Ended, Ringing
from tests.agent_support import write_config
from tests.operator_support import (
    Site,
    SseReader,
    cti,
    operator_config,
    play,
    recorded_call,
    start_site,
    stop_site,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------- tokens


def test_token_is_256_bits_url_safe_stable_and_not_on_disk(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state" / "operators.json")
    token = store.token("ivanov")
    assert looks_like_token(token) and len(token) == 43  # 32 bytes, base64url, no padding
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert store.token("ivanov") == token, "the same link every time"
    assert store.token("petrova") != token
    path = tmp_path / "state" / "operators.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in path.read_text(encoding="utf-8"), "tokens are derived, never stored"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_forged_and_rotated_tokens_are_refused_also_by_a_running_reader(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    cli, agent = TokenStore(path), TokenStore(path)  # two processes' views of one file
    logins = {"ivanov", "petrova"}
    old = cli.token("ivanov")
    assert agent.verify(old, logins) == "ivanov"
    forged = ("A" if old[0] != "A" else "B") + old[1:]
    for bad in (forged, old[:-1], old + "A", "", "x" * 43, old.upper()):
        assert agent.verify(bad, logins) is None, bad
    assert agent.verify(old, {"petrova"}) is None, "a login in no team has no valid token"
    time.sleep(0.01)
    new = cli.token("ivanov", rotate=True)
    assert new != old
    assert agent.verify(old, logins) is None, "rotation invalidates the old token at once"
    assert agent.verify(new, logins) == "ivanov"
    assert agent.verify(cli.token("petrova"), logins) == "petrova", "others keep theirs"


def test_missing_or_damaged_store_gives_no_access(tmp_path: Path) -> None:
    path = tmp_path / "operators.json"
    store = TokenStore(path)
    assert store.verify("A" * 43, {"ivanov"}) is None
    path.write_text("{not json", encoding="utf-8")
    assert store.verify("A" * 43, {"ivanov"}) is None
    assert store.problem and "not valid JSON" in store.problem
    assert "move it away and run 'cti operator-link LOGIN'" in store.problem
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert store.verify("A" * 43, {"ivanov"}) is None, "nested too deeply: no access, no crash"
    assert store.problem and "nested too deeply" in store.problem


@pytest.mark.parametrize(
    "damage", [b"[" * 100_000 + b"]" * 100_000, b'{"operators": 5}', b"\xff\xfe", b'{"x": '])
def test_a_damaged_pages_file_is_kept_aside_and_the_hub_starts_empty(
    tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # the next save writes a fresh file: the damaged one is kept beside it, never overwritten
    path = tmp_path / "pages.json"
    path.write_bytes(damage)
    hub = PopHub(path, clock=Clock())
    assert hub.entries("ivanov") == []
    kept = tmp_path / "pages.json.damaged"
    assert kept.read_bytes() == damage
    assert f"starting empty, the damaged file is kept as {kept}" in caplog.text
    hub.publish_pop("ivanov", pop(1))
    assert json.loads(path.read_bytes())["operators"]["ivanov"]["events"][0]["data"]["id"] == (
        "pop-1")  # fmt: skip
    assert kept.read_bytes() == damage


def test_page_url_uses_public_url_or_listen() -> None:
    token = "T" * 43
    assert page_url(None, "127.0.0.1:9377", token) == f"http://127.0.0.1:9377/operator?t={token}"
    assert page_url("https://cti.example.org/pbx1/", "127.0.0.1:9377", token) == (
        f"https://cti.example.org/pbx1/operator?t={token}"
    )


# ---------------------------------------------------------------------- desk links


CONTEXT: dict[str, Any] = {
    "employee": {"id": "E-17/../x?a=1&b#c", "name": 'Иван "Петров" <b>'},
    "call": {"caller_e164": "+79161234567", "caller_name": "<script>"},
    "form": None,
}


def test_desk_template_renders_values_percent_encoded() -> None:
    url = desk_links.render("https://sd.example.org/employee/{employee[id]}", CONTEXT)
    assert url == "https://sd.example.org/employee/E-17%2F..%2Fx%3Fa%3D1%26b%23c"
    url = desk_links.render("https://sd.example.org/request/new?phone={call[caller_e164]}"
                            "&name={employee[name]}&x={{y}}", CONTEXT)  # fmt: skip
    assert url == (
        "https://sd.example.org/request/new?phone=%2B79161234567"
        "&name=%D0%98%D0%B2%D0%B0%D0%BD%20%22%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%22%20%3Cb%3E"
        "&x={y}"
    )


def test_desk_template_without_its_value_gives_no_link() -> None:
    assert desk_links.render("https://sd/e/{employee[phone]}", CONTEXT) is None
    assert desk_links.render("https://sd/e/{form[client_id]}", CONTEXT) is None
    assert desk_links.render("https://sd/e/{employee[id]}", {"employee": None}) is None


@pytest.mark.parametrize(
    "template",
    [
        "https://sd/{call.__class__}",  # attribute access
        "https://sd/{employee[id]:>99}",  # format spec
        "https://sd/{employee[id]!r}",  # conversion
        "https://sd/{os[environ]}",  # unknown name
        "https://sd/{employee}",  # a whole table
        "https://sd/{",
        "javascript:alert(1)//{employee[id]}",
        "//sd.example.org/{employee[id]}",
    ],
)
def test_bad_desk_templates_are_config_errors(template: str, tmp_path: Path) -> None:
    with pytest.raises(desk_links.TemplateError):
        desk_links.check_template(template)
    assert desk_links.render(template, CONTEXT) is None
    path = tmp_path / "cti.toml"
    write_config(path, {"desk": {"card_url": template}})
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load_file(path)
    assert caught.value.problems[0].startswith("cti.toml: desk.card_url: ")


def test_public_url_must_be_plain_http_url(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    write_config(path, {"agent": {"public_url": "https://x.example.org/cti?a=1"}})
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load_file(path)
    assert "agent.public_url: must be an http:// or https:// URL" in caught.value.problems[0]


# ---------------------------------------------------------------------- the hub


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pop(n: int) -> dict[str, Any]:
    return {"event": "screen_pop", "id": f"pop-{n}", "call": {"call_id": f"c{n}"}}


OWNERS = {
    "101": Operator("ivanov", "Иван Иванов", "Первая линия", "101"),
    "102": Operator("sidorov", "Пётр Сидоров", "Первая линия", "102"),
}


def test_a_pop_is_known_again_exactly_while_it_is_in_the_ring() -> None:
    # A pop rebuilt after a restart must not open twice while the page can still replay it;
    # once the ring has moved past it, the page no longer has it, so it is published again
    # (as a scan of the ring would decide) — and the hub's memory stays bounded meanwhile.
    hub = PopHub(None, clock=Clock())
    assert hub.publish_pop("ivanov", pop(0)) is not None
    for n in range(1, RING):
        hub.publish_pop("ivanov", pop(n))
    assert hub.publish_pop("ivanov", pop(0)) is None, "still in the ring: not again"
    for n in range(RING, RING + RING // 2):
        hub.publish_pop("ivanov", pop(n))
    assert hub.publish_pop("ivanov", pop(0)) is not None, "left the ring: published again"
    assert hub.publish_pop("ivanov", pop(RING + RING // 2 - 1)) is None
    for n in range(RING + RING // 2, 10 * RING):
        hub.publish_pop("ivanov", pop(n))
    assert len(hub.entries("ivanov")) == RING
    assert len(hub._feed("ivanov").pop_ids) <= 2 * RING, "the index forgets what left the ring"


def test_the_pages_file_holds_every_feed_as_it_is_now_after_each_save(tmp_path: Path) -> None:
    # The file is what a restart resumes from: after every save it must hold each operator's
    # ring exactly as it is then (also once the ring has rolled over, its length unchanged),
    # the call history, and the callers' names as UTF-8, byte for byte.
    clock = Clock()
    path = tmp_path / "pages.json"
    hub = PopHub(path, clock=clock)
    name = "Пётр Сидоров \u202e"

    def expected() -> dict[str, Any]:
        return {
            "version": 1,
            "last_id": hub._last_id,
            "operators": {
                login: {"events": [e.to_json() for e in hub.entries(login)],
                        "history": hub.history(login)}
                for login in ("ivanov", "sidorov")
            },
        }  # fmt: skip

    for n in range(3):
        hub.publish_pop("ivanov", {**pop(n), "caller_name": name})
        hub.publish_pop("sidorov", pop(100 + n))
    base = ("1.1", "1.1", "+79161234567", name, "200", "support")
    hub.call_event(Ringing(*base, None, "102"), OWNERS)
    hub.call_event(Ended(*base, None, False, (), ("102",), "no-answer", 5), OWNERS)
    hub.save_now()
    raw = path.read_bytes()
    assert json.loads(raw) == expected()
    assert name.encode() in raw, "names are kept as UTF-8, not escaped"
    for n in range(3, RING + 7):  # the ring rolls over: same length, other entries
        clock.now += 0.5
        hub.publish_pop("ivanov", pop(n))
        if n in (RING, RING + 6):
            hub.save_now()
            assert json.loads(path.read_bytes()) == expected()
    assert len(hub.entries("ivanov")) == RING
    assert [e["data"]["id"] for e in json.loads(path.read_bytes())["operators"]["ivanov"][
        "events"]][:2] == ["pop-7", "pop-8"]  # fmt: skip
    again = PopHub(path, clock=clock)
    assert [e.to_json() for e in again.entries("ivanov")] == [
        e.to_json() for e in hub.entries("ivanov")]  # fmt: skip
    assert again.history("sidorov") == hub.history("sidorov")


def test_a_pop_after_a_quiet_second_is_saved_at_once_and_a_burst_once_a_second(
    tmp_path: Path,
) -> None:
    # What a crash (SIGKILL) can lose from the pages: the pops since the last save. A desk's
    # pop after a quiet moment is written at once; a burst right after it waits for the next
    # second's save rather than writing the file once per pop.
    path = tmp_path / "pages.json"

    def saved() -> list[str]:
        if not path.exists():
            return []
        events = json.loads(path.read_bytes())["operators"]["ivanov"]["events"]
        return [str(e["data"]["id"]) for e in events]

    async def desk() -> tuple[list[str], list[str], list[str]]:
        hub = PopHub(path)
        hub.publish_pop("ivanov", pop(1))
        await asyncio.sleep(0.3)
        first = saved()
        hub.publish_pop("ivanov", pop(2))
        hub.publish_pop("ivanov", pop(3))
        await asyncio.sleep(0.3)
        burst = saved()
        await asyncio.sleep(1.0)
        return first, burst, saved()

    first, burst, later = asyncio.run(desk())
    assert first == ["pop-1"], "the first pop in a while is on disk at once"
    assert burst == ["pop-1"], "a burst waits for the next save"
    assert later == ["pop-1", "pop-2", "pop-3"]


def test_hub_resumes_after_last_event_id_without_loss_or_repeat(tmp_path: Path) -> None:
    clock = Clock()
    hub = PopHub(tmp_path / "pages.json", clock=clock)
    first = hub.publish_pop("ivanov", pop(1))
    clock.now += 1
    second = hub.publish_pop("ivanov", pop(2))
    hub.publish_pop("petrova", pop(3))
    assert first is not None and second is not None and second.id > first.id
    resumed = hub.subscribe("ivanov", first.id, ttl=60)
    assert [e.data["id"] for e in resumed.replay] == ["pop-2"], "only what came after"
    assert hub.subscribe("ivanov", second.id, ttl=60).replay == []
    fresh = hub.subscribe("ivanov", None, ttl=60)
    assert [e.data["id"] for e in fresh.replay] == ["pop-1", "pop-2"], "a reload shows them again"
    clock.now += 61.5
    assert hub.subscribe("ivanov", None, ttl=60).replay == [], "not after pop_ttl"
    assert [e.data["id"] for e in hub.subscribe("ivanov", first.id, 60).replay] == ["pop-2"]
    assert hub.publish_pop("ivanov", pop(2)) is None, "a rebuilt pop is not published twice"
    # live entries go to the subscribers of that operator only
    third = hub.publish_pop("ivanov", pop(4))
    assert third is not None
    assert resumed.queue.get_nowait() is third and fresh.queue.get_nowait() is third
    # a restart keeps the feed and the ids keep growing
    again = PopHub(tmp_path / "pages.json", clock=clock)
    later = again.publish_pop("ivanov", pop(5))
    assert later is not None and later.id > third.id
    assert [e.data["id"] for e in again.subscribe("ivanov", first.id, 60).replay] == [
        "pop-2", "pop-4", "pop-5"]  # fmt: skip
    assert stat.S_IMODE((tmp_path / "pages.json").stat().st_mode) == 0o600


def test_hub_history_answered_missed_and_talk_time() -> None:
    clock = Clock()
    hub = PopHub(None, clock=clock)
    base = ("1.1", "1.1", "+79161234567", "Иван", "200", "support")
    hub.call_event(Ringing(*base, "1800000000.0", "101"), OWNERS)
    hub.call_event(Ringing(*base, "1800000000.1", "102"), OWNERS)
    clock.now += 2
    hub.call_event(Answered(*base, "1800000002.0", "101"), OWNERS)
    clock.now += 30
    hub.call_event(Ended(*base, "1800000035.5", True, ("101",), ("101", "102"), "completed", 35),
                   OWNERS)  # fmt: skip
    (mine,) = hub.history("ivanov")
    assert mine["answered"] is True and mine["talk"] == 34 and mine["ended"] > mine["started"]
    (missed,) = hub.history("sidorov")
    assert missed["answered"] is False and missed["talk"] is None
    assert [e.kind for e in hub.entries("ivanov")] == ["call"]
    for n in range(25):  # only the last 20 calls are kept
        other = (f"2.{n}", f"2.{n}", "+7916", "", "101", None)
        hub.call_event(Ringing(*other, None, "101"), OWNERS)
        hub.call_event(Ended(*other, None, False, (), ("101",), "no-answer", 5), OWNERS)
    history = hub.history("ivanov")
    assert len(history) == 20 and history[0]["call_id"] == "2.24"


def test_stream_sends_hello_replay_live_keepalive_and_ends_when_invalid() -> None:
    async def scenario() -> list[bytes]:
        hub = PopHub(None, keepalive=0.1)
        hub.publish_pop("ivanov", pop(1))
        valid = True
        sub = hub.subscribe("ivanov", None, ttl=60)
        chunks: list[bytes] = []

        async def read() -> None:
            async for chunk in hub.stream(sub, {"hi": 1}, lambda: valid, check_every=0.05):
                chunks.append(chunk)

        task = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        hub.publish_pop("ivanov", pop(2))
        await asyncio.sleep(0.1)
        valid = False  # the token was rotated
        await asyncio.wait_for(task, 2)
        assert hub.subscribers("ivanov") == 0, "a closed stream unsubscribes"
        return chunks

    chunks = asyncio.run(scenario())
    text = b"".join(chunks).decode()
    assert text.startswith('retry: 2000\n\nevent: hello\ndata: {"hi":1}\n\n')
    assert text.count('"id":"pop-1"') == 1 and text.count('"id":"pop-2"') == 1
    assert text.index("pop-1") < text.index(": keep-alive") < text.index("pop-2")


def test_stream_sends_nothing_more_once_the_token_is_invalid() -> None:
    async def scenario() -> bytes:
        hub = PopHub(None)
        valid = True
        sub = hub.subscribe("ivanov", None, ttl=60)
        stream = hub.stream(sub, {}, lambda: valid, check_every=30)
        head = await anext(stream)
        assert b"hello" in head
        valid = False  # rotated between two pops: the next one must not go out
        hub.publish_pop("ivanov", pop(1))
        rest = [chunk async for chunk in stream]
        return b"".join(rest)

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == b""


# ---------------------------------------------------------------------- `cti operator link`


def test_operator_link_prints_one_unwrapped_line_and_rotates(tmp_path: Path) -> None:
    data = operator_config(tmp_path, None)
    data["agent"]["public_url"] = "https://cti.example.org/" + "очень-длинный-путь/" * 6
    path = tmp_path / "cti.toml"
    write_config(path, data)
    env_before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "20"  # a narrow terminal must not wrap it
    try:
        first = cti(path, "operator", "link", "ivanov")
        again = cti(path, "operator", "link", "ivanov")
        rotated = cti(path, "operator", "link", "ivanov", "--rotate")
    finally:
        if env_before is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = env_before
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("\n") == 1 and first.stdout.endswith("\n")
    url = first.stdout.strip()
    assert url.startswith(data["agent"]["public_url"].rstrip("/") + "/operator?t=")
    assert "#" not in url and looks_like_token(url.rsplit("=", 1)[1])
    assert again.stdout == first.stdout
    assert rotated.returncode == 0 and rotated.stdout.count("\n") == 1
    assert rotated.stdout != first.stdout
    assert "old one no longer works" in rotated.stderr
    assert cti(path, "operator", "link", "ivanov").stdout == rotated.stdout


def test_operator_link_for_a_login_in_no_team_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "cti.toml"
    write_config(path, operator_config(tmp_path, None))
    result = cti(path, "operator", "link", "kuznetsov")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "'kuznetsov' is in no responsible team" in result.stderr
    assert not (tmp_path / "state" / "operators.json").exists()


# ---------------------------------------------------------------------- over HTTP


@pytest.fixture
def idle_site(tmp_path: Path) -> Iterator[Site]:
    """A disabled agent (no PBX): enough for the page, its assets and its refusals."""
    site = start_site(tmp_path, pbx=False)
    yield site
    stop_site(site)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """An agent following the fake PBX that replays the recorded call."""
    site = start_site(tmp_path)
    yield site
    stop_site(site)


def _security_headers(reply: httpx.Response) -> None:
    assert reply.headers["content-security-policy"] == CSP
    for part in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
    ):
        assert part in CSP  # fmt: skip
    assert "unsafe-inline" not in CSP
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["cache-control"] == "no-store"


def test_page_and_assets_are_served_with_a_strict_policy(idle_site: Site) -> None:
    url = idle_site.link("ivanov")
    page = httpx.get(url, timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    _security_headers(page)
    html = page.text
    assert "<script>" not in html and "style=" not in html and "on" + "load=" not in html
    assert 'src="operator/operator.js"' in html and 'href="operator/operator.css"' in html
    assert "http://" not in html and "https://" not in html, "nothing from elsewhere (no CDN)"
    for name, kind in (("operator.js", "text/javascript"), ("operator.css", "text/css")):
        asset = httpx.get(f"{idle_site.base}/operator/{name}", timeout=5)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        _security_headers(asset)
        assert "http://" not in asset.text and "https://" not in asset.text
    script = httpx.get(f"{idle_site.base}/operator/operator.js", timeout=5).text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "eval(" not in script and "document.write" not in script


def test_forged_and_rotated_tokens_get_401_and_no_data(idle_site: Site) -> None:
    old = idle_site.link("ivanov")
    forged = old[:-3] + ("AAA" if not old.endswith("AAA") else "BBB")
    no_token = f"{idle_site.base}/operator"
    stream = SseReader(idle_site.events_url("ivanov"))  # open before the rotation
    stream.wait("hello")
    new = idle_site.link("ivanov", "--rotate")
    for url in (forged, old, no_token, f"{idle_site.base}/operator?t="):
        for target in (url, url.replace("/operator", "/operator/events", 1)):
            reply = httpx.get(target, timeout=5)
            assert reply.status_code == 401, target
            assert reply.headers["content-type"].startswith("text/plain")
            _security_headers(reply)
            assert "Иван" not in reply.text and "ivanov" not in reply.text
    assert stream.ended.wait(5), "an open stream with the rotated token is cut"
    assert httpx.get(new, timeout=5).status_code == 200
    stream.close()


def test_sigterm_with_open_streams_stops_cleanly(idle_site: Site) -> None:
    idle_site.link("ivanov")
    readers = [SseReader(idle_site.events_url("ivanov")) for _ in range(3)]
    for reader in readers:
        reader.wait("hello")
    started = time.monotonic()
    assert idle_site.agent.terminate() == 0
    assert time.monotonic() - started < 5.0
    assert all(reader.ended.wait(5) for reader in readers), "streams end with the agent"
    log = idle_site.agent.text()
    assert "Traceback" not in log and "Exception in callback" not in log, log[-2000:]
    for reader in readers:
        reader.close()


def test_stream_carries_only_this_operators_pop_and_the_calls_end(site: Site) -> None:
    assert site.pbx is not None
    for login in ("ivanov", "petrova", "sidorov"):
        site.link(login)
    ivanov = SseReader(site.events_url("ivanov"))
    petrova = SseReader(site.events_url("petrova"))
    sidorov = SseReader(site.events_url("sidorov"))
    try:
        assert ivanov.status == 200
        assert ivanov.headers["content-type"] == "text/event-stream; charset=utf-8"
        _security_headers(httpx.Response(200, headers=ivanov.headers))
        hello = ivanov.wait("hello")[0].data
        assert hello["operator"] == {"login": "ivanov", "name": "Иван Иванов",
                                     "team": "Первая линия"}  # fmt: skip
        call = recorded_call(1, "+79165550101", 'Иван "Ваня" <script>alert(1)</script>')
        play(site.pbx, call)
        (event,) = ivanov.wait("pop")
        data = event.data
        assert event.id is not None and event.id.isdigit()
        assert data["call"]["caller_name"] == 'Иван "Ваня" <script>alert(1)</script>'
        assert data["call"]["caller_e164"] == "+79165550101"
        assert data["call"]["queue"] == "support" and data["call"]["dialed"] == "200"
        assert data["open"][0]["employee"] == {
            "id": "E-101", "name": "Иван Петров", "phone": "8 (916) 555-01-01",
            "department": "Бухгалтерия", "room": "к. 214"}  # fmt: skip
        assert data["open"][1]["type"] == "request_form"
        assert data["links"] == {
            "card": "https://sd.example.org/employee/E-101",
            "form": "https://sd.example.org/request/new?phone=%2B79165550101",
        }
        (ended,) = ivanov.wait("call")
        assert ended.data["call_id"] == call.call_id and ended.data["answered"] is True
        assert ended.data["talk"] == 3, "talk time from the PBX's timestamps: 3 s recorded"
        (missed,) = sidorov.wait("call")
        assert missed.data["answered"] is False, "102 rang unanswered: a missed call"
        time.sleep(0.5)
        assert petrova.of("pop") == [] and petrova.of("call") == [], "not reached, not told"
        assert sidorov.of("pop") == [], "no pop for a phone that only rang (trigger=answer)"
    finally:
        for reader in (ivanov, petrova, sidorov):
            reader.close()
    # a reload (no Last-Event-ID) within pop_ttl shows the pop and the history again
    reload = SseReader(site.events_url("ivanov"))
    try:
        again = reload.wait("pop")
        assert [e.data["id"] for e in again] == [data["id"]]
        history = reload.wait("hello")[0].data["history"]
        assert [h["call_id"] for h in history] == [call.call_id]
    finally:
        reload.close()


def test_sse_resume_drop_between_two_pops_gets_the_second_exactly_once(site: Site) -> None:
    assert site.pbx is not None
    site.link("ivanov")
    first_reader = SseReader(site.events_url("ivanov"))
    first_reader.wait("hello")
    play(site.pbx, recorded_call(1, "+79165550101", "Первый"))
    first_reader.wait("call")
    events = list(first_reader.events)
    first_reader.close()  # the connection drops
    last_id = [e.id for e in events if e.id][-1]
    assert last_id is not None
    second = recorded_call(2, "+79165550102", "Второй")
    play(site.pbx, second)
    wait_for(lambda: "Второй" in _hub_file(site), 10, "the second pop published")
    resumed = SseReader(site.events_url("ivanov"), last_event_id=last_id)
    try:
        resumed.wait("call")
        resumed.wait("pop", timeout=5)
        time.sleep(0.3)
        pops = [e.data["call"]["caller_name"] for e in resumed.of("pop")]
        assert pops == ["Второй"], "the second once, the first not again"
        assert len(resumed.of("call")) == 1
        ids = [int(e.id) for e in resumed.events if e.id]
        assert ids == sorted(ids) and min(ids) > int(last_id)
    finally:
        resumed.close()
    # the page's own reconnect (after an HTTP error) passes the id in the query instead
    by_query = SseReader(site.events_url("ivanov") + f"&last={last_id}")
    try:
        by_query.wait("call")
        by_query.wait("pop", timeout=5)  # the pop follows the rule run, maybe after the call event
        time.sleep(0.3)  # then let anything extra arrive before counting
        assert [e.data["call"]["caller_name"] for e in by_query.of("pop")] == ["Второй"]
    finally:
        by_query.close()


def _hub_file(site: Site) -> str:
    path = site.tmp_path / "state" / "operator-pages.json"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_pops_survive_an_agent_restart_for_resume_and_history(site: Site) -> None:
    assert site.pbx is not None
    site.link("ivanov")
    reader = SseReader(site.events_url("ivanov"))
    play(site.pbx, recorded_call(1, "+79165550101", "До перезапуска"))
    reader.wait("call")
    last_id = [e.id for e in reader.events if e.id][-1]
    reader.close()
    assert site.agent.terminate() == 0
    saved = json.loads(_hub_file(site))
    assert stat.S_IMODE((site.tmp_path / "state" / "operator-pages.json").stat().st_mode) == 0o600
    assert saved["operators"]["ivanov"]["history"][0]["caller_name"] == "До перезапуска"
    site.agent.start()
    site.pbx.wait_login()
    resumed = SseReader(site.events_url("ivanov"), last_event_id=last_id)
    try:
        hello = resumed.wait("hello")[0].data
        assert [h["caller_name"] for h in hello["history"]] == ["До перезапуска"]
        wait_for(lambda: site.pbx is not None and site.pbx.logins >= 2, 20, "re-login")
        site.agent.wait_healthy()
        play(site.pbx, recorded_call(2, "+79165550102", "После"))
        resumed.wait("pop")
        assert [e.data["call"]["caller_name"] for e in resumed.of("pop")] == ["После"]
    finally:
        resumed.close()


def test_half_a_character_from_the_service_desk_breaks_no_pop_page_or_file(
    tmp_path: Path,
) -> None:
    """A service desk that cuts a name in the middle of an emoji answers `"\\ud83d"`: valid
    JSON, but no UTF-8 encoder takes it. The pop still goes out (webhook and page) with U+FFFD
    in its place, the calls after it too, the pages file is written and SIGTERM exits 0."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.agent_support import AgentProcess, Receiver
    from tests.operator_support import FakePBX, operator_config

    class Directory(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"id": "E-1", "name": "\\u0418\\u0432\\u0430\\u043d \\ud83d", "phone": "1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    desk = ThreadingHTTPServer(("127.0.0.1", 0), Directory)
    threading.Thread(target=desk.serve_forever, daemon=True).start()
    receiver = Receiver().start()
    pbx = FakePBX()
    data = operator_config(tmp_path, pbx.port)
    data["directory"] = {"source": f"http://127.0.0.1:{desk.server_address[1]}/e?p={{e164}}",
                         "region": "RU"}  # fmt: skip
    data["webhooks"] = [{"url": receiver.url, "secret": receiver.secret}]
    path = tmp_path / "cti.toml"
    write_config(path, data)
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    site = Site(tmp_path, data, agent, pbx)
    try:
        pbx.wait_login()
        agent.wait_healthy()
        site.link("ivanov")
        page = SseReader(site.events_url("ivanov"))
        try:
            play(pbx, recorded_call(1, "+79165550101", "Анна"))
            play(pbx, recorded_call(2, "+79165550102", "Борис"))
            receiver.wait(lambda: len(receiver.of("call.ended")) == 2, 30, "both calls ended")
            pops = page.wait("pop", count=2)
        finally:
            page.close()
        cards = [hit.json["open"][0]["employee"]["name"] for hit in receiver.of("screen_pop")]
        assert cards == ["Иван \ufffd", "Иван \ufffd"]
        assert [p.data["open"][0]["employee"]["name"] for p in pops] == cards
        assert agent.terminate() == 0
        saved = json.loads((tmp_path / "state" / "operator-pages.json").read_bytes())
        assert len(saved["operators"]["ivanov"]["events"]) >= 2
        assert "Traceback" not in agent.text()
    finally:
        stop_site(site)
        receiver.stop()
        desk.shutdown()
