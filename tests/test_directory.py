"""The employee directory: number normalization, CSV files on disk, a real local HTTP API."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cti_cli.agent.directory import (
    CsvDirectory,
    DirectoryError,
    HttpDirectory,
    normalize_number,
    open_directory,
)
from cti_cli.config import DirectoryConfig

E164 = "+79161234567"

# ---------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8 (916) 123-45-67", E164),
        ("+7 916 1234567", E164),
        ("79161234567", E164),
        ("9161234567", E164),
        ("89161234567", E164),
        ("+7 (916) 123-45-67", E164),
        (" +79161234567 ", E164),
        ("8 495 123-45-67", "+74951234567"),
        ("8 800 555-35-35", "+78005553535"),
        ("+44 20 7946 0958", "+442079460958"),
        ("00 44 20 7946 0958", "+442079460958"),
        ("810 44 20 7946 0958", "+442079460958"),
        ("101", None),
        ("2001", None),
        ("1234567", None),  # a city number without its area code: local only
        ("+7916123456", None),  # one digit short
        ("<unknown>", None),
        ("", None),
        ("   ", None),
        ("anonymous", None),
        ("Anonymous", None),
        ("1-800-FLOWERS", None),
        ("+1 800 FLOWERS", None),
        ("8 916 123-45-67 (моб.)", None),
        ("9161234567 доб. 12", None),
        ("+7+9161234567", None),
        ("916+1234567", None),
        ("9" * 200, None),
    ],
)
def test_normalize_number(raw: str, expected: str | None) -> None:
    assert normalize_number(raw, "RU") == expected


def test_possible_but_not_valid_numbers_are_kept() -> None:
    # +7 000… is no range in use, but the length fits the plan: a directory may hold it.
    assert normalize_number("+7 000 123-45-67", "RU") == "+70001234567"


def test_region_decides_national_numbers() -> None:
    assert normalize_number("(202) 555-0100", "US") == "+12025550100"
    assert normalize_number("+7 916 123-45-67", "US") == E164


_mobile = st.tuples(
    st.integers(900, 999), st.integers(0, 999), st.integers(0, 99), st.integers(0, 99)
)
_formats = [
    "+7 {a} {b:03d}-{c:02d}-{d:02d}",
    "+7 ({a}) {b:03d}-{c:02d}-{d:02d}",
    "8 ({a}) {b:03d}-{c:02d}-{d:02d}",
    "8-{a}-{b:03d}-{c:02d}-{d:02d}",
    "8{a}{b:03d}{c:02d}{d:02d}",
    "7{a}{b:03d}{c:02d}{d:02d}",
    "+7{a}{b:03d}{c:02d}{d:02d}",
    "{a}{b:03d}{c:02d}{d:02d}",
    "{a} {b:03d} {c:02d} {d:02d}",
    "+7 {a} {b:03d}{c:02d}{d:02d}",
    "8 {a} {b:03d}.{c:02d}.{d:02d}",
    "00 7 {a} {b:03d} {c:02d} {d:02d}",
]


@given(_mobile, st.sampled_from(_formats), st.sampled_from(["", " ", "\t"]))
def test_every_format_of_a_ru_mobile_is_one_e164(
    parts: tuple[int, int, int, int], fmt: str, pad: str
) -> None:
    a, b, c, d = parts
    expected = f"+7{a}{b:03d}{c:02d}{d:02d}"
    assert normalize_number(pad + fmt.format(a=a, b=b, c=c, d=d) + pad, "RU") == expected


# ---------------------------------------------------------------- CSV


def write(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


EXCEL_EXPORT = (
    "ID;Name;Phone;Отдел;E-mail\r\n"
    "17;Иван Петров;8 (916) 123-45-67;Бухгалтерия;ivan@example.org\r\n"
    "18;Анна Смирнова;+7 495 111-22-33, 8 903 000 11 22;ИТ «Сервис»;anna@example.org\r\n"
)


def test_csv_excel_export_semicolon_bom_cyrillic(tmp_path: Path) -> None:
    path = write(tmp_path / "employees.csv", EXCEL_EXPORT, bom=True)
    directory = CsvDirectory(path, "RU")
    card = directory.find("+79161234567")
    assert card == {
        "id": "17",
        "name": "Иван Петров",
        "phone": "8 (916) 123-45-67",
        "Отдел": "Бухгалтерия",
        "E-mail": "ivan@example.org",
    }
    assert directory.find("79161234567") == card
    assert directory.find("89161234567") == card
    # Cyrillic byte for byte
    assert card["name"].encode("utf-8") == "Иван Петров".encode()
    # several numbers in one cell; a quoted « » value survives as is
    anna = directory.find("84951112233")
    assert anna is not None and anna["name"] == "Анна Смирнова"
    assert anna["Отдел"] == "ИТ «Сервис»"
    assert directory.find("+79030001122") == anna
    assert directory.find("101") is None
    assert directory.find("+79999999999") is None
    assert directory.describe() == f"csv:{path} (2 employees)"


def test_csv_comma_and_tab_delimiters(tmp_path: Path) -> None:
    comma = write(tmp_path / "c.csv", 'id,name,phone,room\n1,"Петров, Иван","+79161234567",12\n')
    card = CsvDirectory(comma, "RU").find(E164)
    assert card == {"id": "1", "name": "Петров, Иван", "phone": "+79161234567", "room": "12"}
    tab = write(tmp_path / "t.csv", "phone\tname\tid\n9161234567\tИван\t7\n")
    assert CsvDirectory(tab, "RU").find(E164) == {"phone": "9161234567", "name": "Иван", "id": "7"}


def test_a_card_is_a_copy(tmp_path: Path) -> None:
    directory = CsvDirectory(write(tmp_path / "e.csv", EXCEL_EXPORT), "RU")
    card = directory.find(E164)
    assert card is not None
    card["name"] = "changed by a rule"
    assert directory.find(E164) == {**card, "name": "Иван Петров"}


def test_csv_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "employees.csv", "id;ФИО;phone\n1;Иван;+79161234567\n")
    with pytest.raises(DirectoryError) as caught:
        CsvDirectory(path, "RU")
    message = str(caught.value)
    assert str(path) in message and "'name'" in message and "ФИО" in message
    assert "\n" not in message


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "cp1251.csv"
    path.write_bytes("id;name;phone\n1;Иван;+79161234567\n".encode("cp1251"))
    with pytest.raises(DirectoryError, match="not UTF-8"):
        CsvDirectory(path, "RU")


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="no such file"):
        CsvDirectory(tmp_path / "nope.csv", "RU")


def test_csv_skipped_rows_and_duplicates_are_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        "id;name;phone\n"
        "1;Первый;+79161234567\n"
        "2;Внутренний;101\n"
        "\n"
        '3;Второй;"8 916 123 45 67; +7 903 000-00-01"\n'
        "4;Без телефона;\n",
    )
    directory = CsvDirectory(path, "RU")
    first = directory.find(E164)
    assert first is not None and first["id"] == "1"  # the first wins
    second = directory.find("+79030000001")
    assert second is not None and second["id"] == "3"  # its other number still counts
    assert directory.describe() == (
        f"csv:{path} (2 employees, 2 without a phone number skipped, "
        "1 duplicate numbers ignored, the first kept)"
    )
    assert directory.warnings == [
        "line 3: phone '101' is not a phone number",
        "line 5: +79161234567 is already employee id '1' (line 2); the first is kept",
        "line 6: phone '' is not a phone number",
    ]


def test_csv_reload_after_change_at_most_once_a_second(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "id;name;phone\n1;Иван;+79161234567\n")
    now = [1000.0]
    directory = CsvDirectory(path, "RU", clock=lambda: now[0])
    write(path, "id;name;phone\n1;Иван Петрович;+79161234567\n2;Анна;+79030000001\n")
    now[0] += 0.5
    card = directory.find(E164)
    assert card is not None and card["name"] == "Иван"  # not checked yet
    now[0] += 0.6
    card = directory.find(E164)
    assert card is not None and card["name"] == "Иван Петрович"
    assert directory.find("+79030000001") is not None
    assert directory.last_error is None


def test_csv_reload_sees_atomic_replace(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "id;name;phone\n1;Иван;+79161234567\n")
    now = [0.0]
    directory = CsvDirectory(path, "RU", clock=lambda: now[0])
    new = write(tmp_path / "e.csv.new", "id;name;phone\n1;Пётр;+79161234567\n")
    stat = path.stat()
    os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: inode differs
    os.replace(new, path)
    now[0] += 2
    card = directory.find(E164)
    assert card is not None and card["name"] == "Пётр"


def test_csv_broken_reload_keeps_the_old_index(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "id;name;phone\n1;Иван;+79161234567\n")
    now = [0.0]
    directory = CsvDirectory(path, "RU", clock=lambda: now[0])
    write(path, "id;ФИО;phone\n1;Иван;+79161234567\n")
    now[0] += 2
    card = directory.find(E164)
    assert card is not None and card["name"] == "Иван"
    assert directory.last_error is not None
    assert str(path) in directory.last_error and "'name'" in directory.last_error
    assert "reload failed" in directory.describe()

    path.unlink()
    now[0] += 2
    assert directory.find(E164) == card
    assert directory.last_error is not None and "no such file" in directory.last_error

    write(path, "id;name;phone\n1;Иван Иванович;+79161234567\n")
    now[0] += 2
    card = directory.find(E164)
    assert card is not None and card["name"] == "Иван Иванович"
    assert directory.last_error is None
    assert directory.describe() == f"csv:{path} (1 employee)"


@pytest.mark.timeout(5)
def test_csv_fifo_is_refused_quickly(tmp_path: Path) -> None:
    fifo = tmp_path / "employees.csv"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(DirectoryError, match="FIFO, not a regular file"):
        CsvDirectory(fifo, "RU")
    assert time.monotonic() - started < 1


@pytest.mark.timeout(5)
def test_csv_fifo_swapped_in_keeps_the_old_index(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "id;name;phone\n1;Иван;+79161234567\n")
    now = [0.0]
    directory = CsvDirectory(path, "RU", clock=lambda: now[0])
    path.unlink()
    os.mkfifo(path)
    now[0] += 2
    assert directory.find(E164) is not None
    assert directory.last_error is not None and "FIFO" in directory.last_error


@pytest.mark.timeout(5)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_csv_device_is_refused() -> None:
    with pytest.raises(DirectoryError, match="a device, not a regular file"):
        CsvDirectory(Path("/dev/zero"), "RU")


def test_csv_size_is_bounded(tmp_path: Path) -> None:
    path = write(tmp_path / "big.csv", "id;name;phone\n" + "1;Иван;+79161234567\n" * 100)
    with pytest.raises(DirectoryError, match="larger than 1 KiB"):
        CsvDirectory(path, "RU", max_bytes=1024)
    directory = CsvDirectory(path, "RU", max_bytes=64 * 1024)
    assert directory.employees == 1
    assert directory.describe().endswith(
        "(1 employee, 99 duplicate numbers ignored, the first kept)"
    )
    assert directory.warnings[-1] == "… and 49 more"


def test_csv_lookups_from_many_threads(tmp_path: Path) -> None:
    rows = "".join(f"{i};Сотрудник {i};+7916{i:07d}\n" for i in range(200))
    path = write(tmp_path / "e.csv", "id;name;phone\n" + rows)
    directory = CsvDirectory(path, "RU", check_interval=0)
    errors: list[str] = []

    def look(offset: int) -> None:
        for i in range(200):
            n = (i + offset) % 200
            card = directory.find(f"8916{n:07d}")
            if card is None or card["id"] != str(n):
                errors.append(f"{n}: {card}")

    threads = [threading.Thread(target=look, args=(k * 17,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_open_directory(tmp_path: Path) -> None:
    assert open_directory(DirectoryConfig()) is None
    path = write(tmp_path / "e.csv", EXCEL_EXPORT)
    directory = open_directory(DirectoryConfig(source=f"csv:{path}"))
    assert isinstance(directory, CsvDirectory)
    assert directory.find(E164) is not None
    with pytest.raises(DirectoryError, match="no such file"):
        open_directory(DirectoryConfig(source=f"csv:{tmp_path / 'missing.csv'}"))
    with pytest.raises(DirectoryError, match="names no file"):
        open_directory(DirectoryConfig(source="csv:"))
    with pytest.raises(DirectoryError, match="unknown placeholder"):
        open_directory(DirectoryConfig(source="https://sd/api?phone={phone}"))
    with pytest.raises(DirectoryError, match=r"no \{e164\}"):
        open_directory(DirectoryConfig(source="https://sd/api/employees"))
    with pytest.raises(DirectoryError, match='region "ZZ"'):
        open_directory(DirectoryConfig(source=f"csv:{path}", region="ZZ"))


# ---------------------------------------------------------------- HTTP: a real local server


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    delay: float = 0.0


@dataclass
class FakeDesk:
    """A real HTTP server on 127.0.0.1: records each request, answers from `replies` by path."""

    base: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, Reply] = field(default_factory=dict)
    default: Reply = field(default_factory=lambda: Reply(404, {"error": "not found"}))


@pytest.fixture
def desk() -> Iterator[FakeDesk]:
    state = FakeDesk()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            state.requests.append(
                {
                    "path": parts.path,
                    "raw_query": parts.query,
                    "query": parse_qs(parts.query),
                    "headers": dict(self.headers.items()),
                }
            )
            reply = state.replies.get(parts.path, state.default)
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def http_directory(
    desk: FakeDesk,
    template: str = "/employees?phone={e164}",
    *,
    headers: dict[str, str] | None = None,
    cache_ttl: float = 300,
    timeout: float = 2,
    now: list[float] | None = None,
) -> HttpDirectory:
    clock = (lambda: now[0]) if now is not None else time.monotonic
    return HttpDirectory(desk.base + template, "RU", headers or {}, cache_ttl, timeout, clock=clock)


IVAN = {"id": 17, "name": "Иван Петров", "phones": ["+79161234567"], "dept": {"name": "ИТ"}}


def test_http_placeholders_are_url_encoded(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(200, IVAN)
    directory = http_directory(desk, "/employees?phone={e164}&raw={number}&d={digits}")
    assert directory.find("8 (916) 123-45-67") == IVAN
    [request] = desk.requests
    assert (
        request["raw_query"] == "phone=%2B79161234567&raw=8%20%28916%29%20123-45-67&d=79161234567"
    )
    assert request["query"] == {
        "phone": ["+79161234567"],
        "raw": ["8 (916) 123-45-67"],
        "d": ["79161234567"],
    }
    assert request["headers"]["User-Agent"] == "cti/0.1.0"


def test_http_placeholder_in_the_path(desk: FakeDesk) -> None:
    desk.replies["/employees/79161234567"] = Reply(200, [IVAN, {"id": 18}])
    directory = http_directory(desk, "/employees/{digits}")
    assert directory.find("+79161234567") == IVAN  # a list: its first element


def test_http_token_from_file_in_header(desk: FakeDesk, tmp_path: Path) -> None:
    token = tmp_path / "sd-token"
    token.write_text("s3cr3t-t0ken\n")
    desk.replies["/employees"] = Reply(200, IVAN)
    directory = http_directory(
        desk,
        headers={"Authorization": f"Bearer {{file:{token}}}", "X-Tenant": "main"},
    )
    directory.find(E164)
    headers = desk.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer s3cr3t-t0ken"
    assert headers["X-Tenant"] == "main"
    assert "s3cr3t" not in directory.describe()


def test_http_missing_token_file_names_it(desk: FakeDesk, tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    with pytest.raises(DirectoryError) as caught:
        http_directory(desk, headers={"Authorization": f"Bearer {{file:{missing}}}"})
    assert str(missing) in str(caught.value) and "Authorization" in str(caught.value)
    assert desk.requests == []


def test_http_cache_until_ttl(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(200, IVAN)
    now = [0.0]
    directory = http_directory(desk, cache_ttl=300, now=now)
    assert directory.find("+79161234567") == IVAN
    assert directory.find("8 916 123 45 67") == IVAN  # same number, another format: cached
    now[0] += 299
    assert directory.find("9161234567") == IVAN
    assert len(desk.requests) == 1
    now[0] += 2
    assert directory.find(E164) == IVAN
    assert len(desk.requests) == 2


def test_http_cached_card_is_a_copy(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(200, IVAN)
    directory = http_directory(desk)
    card = directory.find(E164)
    assert card is not None
    card["dept"]["name"] = "changed by a rule"
    assert directory.find(E164) == IVAN


def test_http_404_and_null_are_none_and_cached(desk: FakeDesk) -> None:
    now = [0.0]
    directory = http_directory(desk, now=now)
    assert directory.find(E164) is None  # the default reply is 404
    assert directory.find(E164) is None
    assert len(desk.requests) == 1
    desk.replies["/employees"] = Reply(200, None)
    assert directory.find("+79030000001") is None
    desk.replies["/employees"] = Reply(200, [])
    assert directory.find("+79030000002") is None
    assert len(desk.requests) == 3


def test_http_unnormalizable_number_makes_no_request(desk: FakeDesk) -> None:
    directory = http_directory(desk)
    for number in ("101", "<unknown>", "anonymous", ""):
        assert directory.find(number) is None
    assert desk.requests == []


def test_http_500_is_an_error_not_cached(desk: FakeDesk, tmp_path: Path) -> None:
    token = tmp_path / "sd-token"
    token.write_text("s3cr3t-t0ken")
    desk.replies["/employees"] = Reply(500, {"echo": "Bearer s3cr3t-t0ken"})
    directory = http_directory(desk, headers={"Authorization": f"Bearer {{file:{token}}}"})
    with pytest.raises(DirectoryError) as caught:
        directory.find(E164)
    message = str(caught.value)
    assert "HTTP 500" in message and desk.base in message
    assert "s3cr3t" not in message and "\n" not in message
    with pytest.raises(DirectoryError):
        directory.find(E164)
    assert len(desk.requests) == 2  # errors are not cached


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(401, {}), "HTTP 401 Unauthorized; check the token"),
        (Reply(302, {}), "HTTP 302 Found, a redirect"),
        (Reply(200, b"<html>login</html>"), "not JSON"),
        (Reply(200, "Иван"), "JSON str, not an object"),
        (Reply(200, [1, 2]), "JSON int, not an object"),
    ],
)
def test_http_bad_answers(desk: FakeDesk, reply: Reply, expected: str) -> None:
    desk.replies["/employees"] = reply
    with pytest.raises(DirectoryError, match=expected):
        http_directory(desk).find(E164)


@pytest.mark.timeout(10)
def test_http_timeout_is_an_error_without_secrets(desk: FakeDesk, tmp_path: Path) -> None:
    token = tmp_path / "sd-token"
    token.write_text("s3cr3t-t0ken")
    desk.replies["/employees"] = Reply(200, IVAN, delay=1.5)
    directory = http_directory(
        desk, headers={"Authorization": f"Bearer {{file:{token}}}"}, timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(DirectoryError, match=r"no answer within 0\.3 s") as caught:
        directory.find(E164)
    assert time.monotonic() - started < 1.2
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.timeout(10)
def test_http_connection_refused(tmp_path: Path) -> None:
    directory = HttpDirectory("http://127.0.0.1:9/e?p={e164}", "RU", {}, 300, 1)
    with pytest.raises(DirectoryError, match="cannot connect"):
        directory.find(E164)


def test_http_query_secret_stays_out_of_messages(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(500, {})
    directory = http_directory(desk, "/employees?key=API-KEY-123&phone={e164}")
    with pytest.raises(DirectoryError) as caught:
        directory.find(E164)
    assert "API-KEY-123" not in str(caught.value)
    assert "API-KEY-123" not in directory.describe()


@pytest.mark.timeout(10)
def test_http_simultaneous_lookups_share_one_request(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(200, IVAN, delay=0.3)
    directory = http_directory(desk)
    results: list[dict[str, Any] | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(directory.find(E164))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [IVAN] * 6
    assert len(desk.requests) == 1


def test_http_injected_client_gets_headers_and_timeout(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(200, IVAN)
    with httpx.Client() as client:
        directory = HttpDirectory(
            desk.base + "/employees?phone={e164}", "RU", {"X-Key": "k"}, 0, 2, client=client
        )
        assert directory.find(E164) == IVAN
        assert directory.find(E164) == IVAN  # cache_ttl = 0: no caching
    assert len(desk.requests) == 2
    assert desk.requests[0]["headers"]["User-Agent"] == "cti/0.1.0"
    assert desk.requests[0]["headers"]["X-Key"] == "k"


def test_open_directory_http(desk: FakeDesk) -> None:
    desk.replies["/employees"] = Reply(200, IVAN)
    config = DirectoryConfig(source=desk.base + "/employees?phone={e164}", timeout=1)
    directory = open_directory(config)
    assert isinstance(directory, HttpDirectory)
    assert directory.find(E164) == IVAN
    assert directory.describe() == f"{desk.base}/employees?… (cache 300 s, 1 numbers cached)"
