"""Operator pages in a real headless Chromium (Debian's `chromium`, driven by Playwright; no
browser is ever downloaded): the pop appears on the answering operator's page, only there, in
time; PBX strings render as text; a reload mid-call shows the pop again; a rotated link is
refused. Most tests replay the recorded Asterisk 22 call through the fake AMI peer (exact
timing); the last one places a real call in the lab.

Without chromium or playwright these tests skip; under CTI_REQUIRE_LAB=1 they fail.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_support import AgentProcess, free_port, write_config
from tests.conftest import _unavailable
from tests.operator_support import (
    EMPLOYEES,
    Site,
    link,
    play,
    recorded_call,
    start_site,
    stop_site,
)

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HOSTILE = (
    '<img src=x onerror="window.__pwned=1"> "Иван" \'O\'Brien\' <script>window.__pwned=2</script>'
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = os.environ.get("CTI_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        _unavailable(f"chromium is not installed ({path}; apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    playwright = sync_playwright().start()
    try:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    except Exception as exc:
        playwright.stop()
        _unavailable(f"chromium does not start: {exc}")
    yield instance
    instance.close()
    playwright.stop()


class Tab:
    """One operator's page in its own browser context (own storage), with its console."""

    def __init__(self, browser: Any, url: str, locale: str = "en-US", width: int = 420) -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": width, "height": 900})
        self.context.route("https://sd.example.org/**",
                           lambda route: route.fulfill(body="service desk"))  # fmt: skip
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.status = self.page.goto(url).status

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def live(self) -> Tab:
        self.page.wait_for_selector("body[data-state=live]", timeout=10_000)
        return self

    def pop(self, timeout: float = 10.0) -> Any:
        return self.page.wait_for_selector("article.pop", timeout=timeout * 1000)

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def count(self, selector: str) -> int:
        return int(self.page.locator(selector).count())

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = start_site(tmp_path)
    yield site
    stop_site(site)


def table(tab: Tab, selector: str) -> dict[str, str]:
    rows = tab.page.eval_on_selector_all(
        f"{selector} tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"
    )
    return {k: v for k, v in rows}


def test_pop_on_the_answering_operators_page_within_1s_as_text_and_nowhere_else(
    browser: Any, site: Site
) -> None:
    assert site.pbx is not None
    ivanov = Tab(browser, site.link("ivanov")).live()
    petrova = Tab(browser, site.link("petrova")).live()
    sidorov = Tab(browser, site.link("sidorov")).live()
    try:
        call = recorded_call(1, "+79165550101", HOSTILE)
        site.pbx.send(call.ringing)
        answered = site.pbx.send(call.answer)
        card = ivanov.pop(5)
        received = int(card.get_attribute("data-received-at"))
        assert received - answered * 1000 < 1000, f"{received - answered * 1000:.0f} ms"
        site.pbx.send(call.talking)

        # the caller's own caller-ID name is shown as text, never run
        assert ivanov.text(".pop .caller .name") == HOSTILE
        assert ivanov.page.evaluate("window.__pwned") is None
        assert ivanov.count("#pops img, #pops script, #calls img, #calls script") == 0
        assert ivanov.text(".pop .caller .number") == "+79165550101"
        meta = table(ivanov, ".pop table.meta")
        assert meta["Queue"] == "support" and meta["Dialled"] == "200"
        assert meta["State"] == "In progress"
        assert table(ivanov, ".pop .employee") == {
            "id": "E-101", "name": "Иван Петров", "phone": "8 (916) 555-01-01",
            "department": "Бухгалтерия", "room": "к. 214"}  # fmt: skip
        form = table(ivanov, ".pop .form")
        assert form["client_id"] == "E-101" and form["phone"] == "+79165550101"
        hrefs = ivanov.page.eval_on_selector_all(".pop .links a", "a => a.map(x => x.href)")
        assert hrefs == ["https://sd.example.org/employee/E-101",
                         "https://sd.example.org/request/new?phone=%2B79165550101"]  # fmt: skip

        # the end of the call updates the card and the history
        site.pbx.send(call.end)
        ivanov.page.wait_for_selector(".pop[data-ended='1']", timeout=5000)
        assert ivanov.text(".pop .state") == "Ended · talk time 0:03"
        ivanov.page.wait_for_selector("#calls li.answered")
        assert HOSTILE in ivanov.text("#calls li.answered .name")
        sidorov.page.wait_for_selector("#calls li.missed", timeout=5000)
        assert sidorov.text("#calls li.missed .badge") == "Missed"
        assert sidorov.count("article.pop") == 0, "102 only rang; the trigger is answer"
        time.sleep(0.5)
        assert petrova.count("article.pop") == 0 and petrova.count("#calls li") == 0
        assert petrova.text("#idle") == "Waiting for a call…"
        for tab in (ivanov, petrova, sidorov):
            assert tab.problems == [], tab.problems  # no CSP violation, no script error
    finally:
        for tab in (ivanov, petrova, sidorov):
            tab.close()


def test_reload_mid_call_shows_the_pop_again_then_its_end(browser: Any, site: Site) -> None:
    assert site.pbx is not None
    tab = Tab(browser, site.link("ivanov")).live()
    try:
        call = recorded_call(1, "+79165550102", "Мария Сидорова")
        site.pbx.send(call.ringing + call.answer + call.talking)
        first = tab.pop().get_attribute("data-pop-id")
        tab.page.reload()
        tab.live()
        again = tab.pop(5)
        assert again.get_attribute("data-pop-id") == first
        assert tab.count("article.pop") == 1, "shown once, not twice"
        assert table(tab, ".pop .employee")["id"] == "E-102"
        site.pbx.send(call.end)
        tab.page.wait_for_selector(".pop[data-ended='1']", timeout=5000)
        assert tab.problems == []
    finally:
        tab.close()


def test_page_reconnects_by_itself_after_an_agent_restart(browser: Any, site: Site) -> None:
    assert site.pbx is not None
    tab = Tab(browser, site.link("ivanov")).live()
    try:
        play(site.pbx, recorded_call(1, "+79165550101", "Первый"))
        tab.page.wait_for_selector(".pop[data-ended='1']", timeout=5000)
        assert site.agent.terminate() == 0
        tab.page.wait_for_selector("body[data-state=reconnecting]", timeout=10_000)
        logins = site.pbx.logins
        site.agent.start()
        deadline = time.monotonic() + 20
        while site.pbx.logins == logins and time.monotonic() < deadline:
            time.sleep(0.05)
        site.agent.wait_healthy()
        tab.live()
        second = recorded_call(2, "+79165550102", "Второй")
        site.pbx.send(second.ringing + second.answer)
        tab.page.wait_for_selector(f".pop[data-call-id='{second.call_id}']", timeout=5000)
        names = tab.page.eval_on_selector_all(
            "article.pop .caller .name", "els => els.map(e => e.textContent)"
        )
        assert names == ["Второй", "Первый"], "nothing lost, nothing twice"
        assert tab.count("#calls li") == 1
        site.pbx.send(second.talking + second.end)
        tab.page.wait_for_selector("#calls li:nth-child(2)", timeout=5000)
    finally:
        tab.close()


NOTIFICATION_SPY = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push([title, options.body, options.tag]); }
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""


def test_browser_notification_when_allowed_once_per_pop(browser: Any, site: Site) -> None:
    assert site.pbx is not None
    context = browser.new_context(locale="en-US")
    try:
        context.add_init_script(NOTIFICATION_SPY)  # stands in for the OS notification
        page = context.new_page()
        page.goto(site.link("ivanov"))
        page.wait_for_selector("body[data-state=live]")
        assert page.is_hidden("#notify"), "no button once notifications are allowed"
        call = recorded_call(1, "+79165550101", "Иван <b>Петров</b>")
        site.pbx.send(call.ringing + call.answer)
        page.wait_for_selector("article.pop")
        notes = page.evaluate("window.__notes")
        assert len(notes) == 1
        assert notes[0][:2] == ["Иван <b>Петров</b>", "+79165550101 · support"]
        page.reload()
        page.wait_for_selector("article.pop")
        assert page.evaluate("window.__notes") == [], "a reload does not notify again"
        site.pbx.send(call.talking + call.end)
    finally:
        context.close()


def test_open_automatically_opens_the_card_in_a_new_tab_once(browser: Any, site: Site) -> None:
    assert site.pbx is not None
    tab = Tab(browser, site.link("ivanov")).live()
    try:
        tab.page.check("#auto")
        call = recorded_call(1, "+79165550101", "Иван Петров")
        with tab.context.expect_page(timeout=10_000) as opened:
            site.pbx.send(call.ringing + call.answer)
        card = opened.value
        card.wait_for_load_state()
        assert card.url == "https://sd.example.org/employee/E-101"
        assert card.evaluate("window.opener") is None
        tab.page.reload()  # the switch is remembered; the card is not opened again
        tab.live()
        tab.pop()
        assert tab.page.is_checked("#auto")
        time.sleep(0.5)
        assert len(tab.context.pages) == 2
        site.pbx.send(call.talking + call.end)
    finally:
        tab.close()


def test_rotated_link_is_refused_and_the_open_page_says_so(browser: Any, site: Site) -> None:
    old = site.link("ivanov")
    tab = Tab(browser, old).live()
    try:
        new = site.link("ivanov", "--rotate")
        tab.page.wait_for_selector("body[data-state=refused]", timeout=15_000)
        assert "not valid" in tab.text("#problem")
        refused = Tab(browser, old)
        try:
            assert refused.status == 401
            assert "Иван" not in refused.page.content()
        finally:
            refused.close()
        fresh = Tab(browser, new).live()
        fresh.close()
    finally:
        tab.close()


def test_a_caller_name_thousands_long_leaves_the_number_and_card_in_sight(
    browser: Any, site: Site
) -> None:
    # a caller sets their own caller-ID name: 5,000 characters (and an emoji at the cut) must
    # not fill the page, nor the agent's log line for the pop
    assert site.pbx is not None
    name = "Щ" * 98 + "😀" + "Щ" * 5000
    tab = Tab(browser, site.link("ivanov")).live()
    try:
        play(site.pbx, recorded_call(1, "+79165550101", name))
        tab.page.wait_for_selector("#calls li.answered", timeout=5000)
        shown = tab.text(".pop .caller .name")
        assert shown == "Щ" * 98 + "😀…", "100 characters, the emoji whole"
        assert tab.page.get_attribute(".pop .caller .name", "title") == name
        assert len(tab.text("#calls li .name")) == 100
        number = tab.page.locator(".pop .caller .number").bounding_box()
        employee = tab.page.locator(".pop .employee").bounding_box()
        assert number is not None and employee is not None
        assert number["y"] < 500 and employee["y"] < 750, (number, employee)  # of 900
        assert tab.problems == []
    finally:
        tab.close()
    log = site.agent.text()
    assert "pop → ivanov" in log and "Щ" * 200 not in log


def test_russian_page_with_a_cyrillic_caller_narrow_window_screenshot(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    assert site.pbx is not None
    tab = Tab(browser, site.link("ivanov"), locale="ru-RU", width=480).live()
    try:
        assert tab.text("h1") == "Звонки"
        earlier = recorded_call(1, "+79165550102", "Мария Сидорова")
        play(site.pbx, earlier)
        tab.page.wait_for_selector("#calls li.answered", timeout=5000)
        call = recorded_call(2, "+79165550101", "Иван Петров")
        site.pbx.send(call.ringing + call.answer + call.talking)
        tab.page.wait_for_selector(f".pop[data-call-id='{call.call_id}']", timeout=5000)
        assert tab.text(f".pop[data-call-id='{call.call_id}'] .caller .name") == "Иван Петров"
        assert tab.text(".pop .employee h3") == "Карточка сотрудника"
        assert tab.text(".pop .links .card-link") == "Открыть карточку"
        assert tab.text("#calls li .badge") == "Принят"
        width = tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 480, "readable on a narrow window: no sideways scrolling"
        shot = tmp_path / "operator-page.png"
        tab.page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("CTI_UPDATE_SCREENSHOTS") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "operator-page.png")
        site.pbx.send(call.end)
        ended = f".pop[data-call-id='{call.call_id}'][data-ended='1']"  # not the earlier call's
        tab.page.wait_for_selector(ended, timeout=5000)
        assert tab.text(f".pop[data-call-id='{call.call_id}'] .state") == "Завершён · разговор 0:03"
        assert tab.problems == []
    finally:
        tab.close()


# ---------------------------------------------------------------------- the real lab


def _watch_answer(lab: Any, extension: str, until: float, seen: dict[str, float]) -> None:
    """Record when Asterisk reports `extension`'s channel Up (the answer), on our own AMI login."""
    from lab.amiraw import RawAmi

    info = lab.info
    ami = RawAmi(info.ami_host, info.ami_port)
    try:
        ami.login(info.ami_user, info.ami_secret)
        seen["ready"] = time.time()
        for event in ami.events(until):
            if (event.get("Event") == "Newstate" and event.get("ChannelStateDesc") == "Up"
                    and event.get("Channel", "").startswith(f"PJSIP/{extension}-")):  # fmt: skip
                # Asterisk's own timestamp of the answer (same host clock), else when we saw it
                stamp = event.get("Timestamp")
                seen["answered"] = min(float(stamp), time.time()) if stamp else time.time()
                return
    finally:
        ami.close()


@pytest.mark.lab
def test_lab_call_answered_by_101_pops_on_ivanovs_page_within_1s(
    browser: Any, lab: Any, tmp_path: Path
) -> None:
    csv = tmp_path / "employees.csv"
    csv.write_text(EMPLOYEES, encoding="utf-8")
    info = lab.info
    data = {
        "enabled": True,
        "server": {"host": info.ami_host, "port": info.ami_port, "login": info.ami_user,
                   "password": info.ami_secret},
        "teams": [
            {"name": "Первая линия",
             "members": [{"login": "ivanov", "name": "Иван Иванов", "extensions": ["101"]}]},
            {"name": "Вторая линия",
             "members": [{"login": "petrova", "name": "Анна Петрова", "extensions": ["103"]}]},
        ],
        "rule": {"trigger": "answer"},
        "directory": {"source": f"csv:{csv}", "region": "RU"},
        "desk": {"card_url": "https://sd.example.org/employee/{employee[id]}"},
        "agent": {"listen": f"127.0.0.1:{free_port()}", "state_dir": str(tmp_path / "state"),
                  "pbx": "lab"},
    }  # fmt: skip
    path = tmp_path / "cti.toml"
    write_config(path, data)
    lab.phone("101", "answer", answer_after=1.5)
    lab.phone("102", "noanswer")
    agent = AgentProcess(path, data["agent"]["listen"], tmp_path / "agent.log").start()
    tabs: list[Tab] = []
    try:
        agent.wait_healthy()
        ivanov = Tab(browser, link(path, "ivanov")).live()
        petrova = Tab(browser, link(path, "petrova")).live()
        tabs += [ivanov, petrova]
        seen: dict[str, float] = {}
        watcher = threading.Thread(
            target=_watch_answer, args=(lab, "101", time.monotonic() + 40, seen), daemon=True
        )
        watcher.start()
        while "ready" not in seen and watcher.is_alive():
            time.sleep(0.02)
        caller = "+79165550101"
        lab.call("200", caller=caller, caller_name="Иван Петров", talk=6.0)
        card = ivanov.pop(20)
        watcher.join(10)
        assert "answered" in seen, "the answer was seen on AMI"
        received = int(card.get_attribute("data-received-at"))
        assert received - seen["answered"] * 1000 < 1000, (
            f"{received - seen['answered'] * 1000:.0f} ms after the answer"
        )
        assert ivanov.text(".pop .caller .name") == "Иван Петров"
        assert table(ivanov, ".pop .employee")["room"] == "к. 214"
        # reloaded mid-call: the pop again (within pop_ttl)
        pop_id = card.get_attribute("data-pop-id")
        ivanov.page.reload()
        ivanov.live()
        assert ivanov.pop(5).get_attribute("data-pop-id") == pop_id
        ivanov.page.wait_for_selector(".pop[data-ended='1']", timeout=20_000)
        assert ivanov.count("#calls li.answered") == 1
        assert petrova.count("article.pop") == 0, "the call never reached 103"
        assert httpx.get(f"http://{agent.listen}/operator?t=" + "A" * 43).status_code == 401
        lab.wait_idle(40)
    finally:
        for tab in tabs:
            tab.close()
        agent.terminate()
        lab.reset_phones()
