"""`cti recordings` / `cti calls` against a real MariaDB holding FreePBX-schema CDRs, including
hostile and broken input: traversal in recordingfile, SQL injection, bad credentials, a server
that is down, old schemas, missing indexes, empty and truncated WAVs."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cdr_support import ScratchCdr, leg, scratch_cdr, wav_bytes
from needs import unavailable

from lab import MariaDB

pytestmark = pytest.mark.mariadb  # the `mariadb` fixture: a private mariadbd (lab.mariadb)

UID = "1795641007.0"
NAME = f"in-200-+79161234567-20261125-100000-{UID}.wav"


@pytest.fixture
def cdr(mariadb: MariaDB, tmp_path: Path) -> Iterator[ScratchCdr]:
    with scratch_cdr(mariadb, tmp_path) as scratch:
        yield scratch


def queue_call_rung_twice(uid: str = UID, recording: str = NAME) -> list[dict[str, object]]:
    """What Asterisk writes for a ring-all queue (101+102) that rang twice, then 101 answered."""
    legs = [
        ("10:00:00", "PJSIP/101-00000002", "NO ANSWER", 0),
        ("10:00:00", "PJSIP/102-00000003", "NO ANSWER", 0),
        ("10:00:20", "PJSIP/101-00000004", "NO ANSWER", 0),
        ("10:00:20", "PJSIP/102-00000005", "ANSWERED", 12),
        ("10:00:00", "", "ANSWERED", 0),  # the caller's own leg while it waited in the queue
    ]
    return [
        leg(uid, calldate=f"2026-11-25 {t}", dstchannel=ch, disposition=d, billsec=b,
            recordingfile=recording, sequence=i)
        for i, (t, ch, d, b) in enumerate(legs)
    ]  # fmt: skip


def put_recording(cdr: ScratchCdr, name: str, content: bytes, day: str = "2026/11/25") -> Path:
    path = cdr.recordings / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the lookup


def test_lookup_lists_every_leg_and_the_recording(cdr: ScratchCdr) -> None:
    cdr.insert(queue_call_rung_twice())
    cdr.insert([leg("1795641999.7", dstchannel="PJSIP/103-00000009")])  # another call
    path = put_recording(cdr, NAME, wav_bytes(3.0))

    res = cdr.cti_process("recordings", UID)

    assert res.code == 0, res.err
    assert f"call {UID}: 5 CDR rows in {cdr.database}.cdr" in res.out
    for channel in ("101-00000002", "102-00000003", "101-00000004", "102-00000005"):
        assert channel in res.out
    assert "103-00000009" not in res.out
    assert "Иван Петров <+79161234567> → 200" in res.out
    assert f"#1 present  {path}" in res.out
    assert "0:03.0" in res.out and "PCM 8000 Hz mono" in res.out
    assert res.err == ""


def test_lookup_json_is_complete_and_utf8_exact(cdr: ScratchCdr) -> None:
    cdr.insert(queue_call_rung_twice())
    path = put_recording(cdr, NAME, wav_bytes(2.5))

    res = cdr.cti("recordings", UID, "--json")

    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["uniqueid"] == UID and data["missing_columns"] == []
    assert len(data["rows"]) == 5
    assert {r["disposition"] for r in data["rows"]} == {"ANSWERED", "NO ANSWER"}
    assert all(r["clid"] == '"Иван Петров" <+79161234567>' for r in data["rows"])
    assert all(r["recording"] == 0 for r in data["rows"])
    (rec,) = data["recordings"]
    assert rec["status"] == "present" and rec["path"] == str(path)
    assert rec["size"] == path.stat().st_size and rec["seconds"] == 2.5
    assert '"Иван Петров"' in res.out  # not \u-escaped


def test_rows_sharing_the_linkedid_are_found(cdr: ScratchCdr) -> None:
    cdr.insert([
        leg(UID, dstchannel="PJSIP/101-00000002", sequence=1),
        leg("1795641010.5", linkedid=UID, channel="PJSIP/101-00000002",
            dstchannel="PJSIP/103-00000007", sequence=2),
        leg("1795641010.6", linkedid="1795641010.6", dstchannel="PJSIP/102-0000000a"),
    ])  # fmt: skip

    data = json.loads(cdr.cti("recordings", UID, "--json").out)

    assert [r["dstchannel"] for r in data["rows"]] == ["PJSIP/101-00000002", "PJSIP/103-00000007"]


def test_system_name_prefix_is_a_valid_uniqueid(cdr: ScratchCdr) -> None:
    uid = "pbx-main-1529936170.42"
    cdr.insert([leg(uid)])
    res = cdr.cti("recordings", uid, "--json")
    assert res.code == 0 and json.loads(res.out)["rows"][0]["uniqueid"] == uid


def test_unknown_uniqueid_says_where_it_looked(cdr: ScratchCdr) -> None:
    cdr.insert(queue_call_rung_twice())
    res = cdr.cti("recordings", "1795641007.1")
    assert res.code == 1
    assert f"no call with uniqueid 1795641007.1 in {cdr.database}.cdr" in res.err


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "bad",
    ["1795641007.0' OR '1'='1", "1795641007.0; DROP TABLE cdr", "abc", "1795641007", "", "../x"],
)
def test_bad_uniqueid_is_refused_before_the_database(cdr: ScratchCdr, bad: str) -> None:
    # The database is unreachable: a refusal with exit 2 proves it was never contacted.
    cdr.write_files(url=f"jdbc:mysql://127.0.0.1:{closed_port()}/{cdr.database}")
    res = cdr.cti("recordings", bad)
    assert res.code == 2
    assert "is not an Asterisk uniqueid" in res.err and "1795641007.0" in res.err


def test_sql_injection_in_number_is_just_a_number(cdr: ScratchCdr) -> None:
    cdr.insert(queue_call_rung_twice())
    res = cdr.cti("calls", "--number", "1' OR '1'='1", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out) == []
    assert len(json.loads(cdr.cti("calls", "--json").out)) == 1  # the table is intact


def test_recordingfile_leading_outside_the_folder_is_refused(
    cdr: ScratchCdr, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(wav_bytes(1.0))
    link_name = "in-200-1-20261125-100000-1795641007.3.wav"
    (cdr.recordings / "2026/11/25").mkdir(parents=True)
    os.symlink(secret, cdr.recordings / "2026/11/25" / link_name)
    hostile = ["../secret.wav", "2026/../../secret.wav", str(secret), link_name]
    cdr.insert([leg(UID, recordingfile=name, sequence=i) for i, name in enumerate(hostile)])
    out_dir = tmp_path / "out"

    res = cdr.cti("recordings", UID, "--json", "--copy-to", str(out_dir))

    assert res.code == 1 and "nothing copied" in res.err
    recs = json.loads(res.out)["recordings"]
    assert [r["status"] for r in recs] == ["refused"] * 4
    assert all("outside the recordings folder" in r["problem"] for r in recs)
    assert all(r["size"] is None and r["copied_to"] is None for r in recs)
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_empty_and_truncated_wavs_are_reported(cdr: ScratchCdr) -> None:
    empty = "in-200-1-20261125-100000-1795641007.0.wav"
    cut = "in-200-2-20261125-100001-1795641007.0.wav"
    put_recording(cdr, empty, b"")
    whole = wav_bytes(4.0)
    put_recording(cdr, cut, whole[: 44 + 8000 * 2])  # header says 4 s, 1 s on disk
    cdr.insert([leg(UID, recordingfile=empty), leg(UID, recordingfile=cut, sequence=2)])

    recs = json.loads(cdr.cti("recordings", UID, "--json").out)["recordings"]

    assert recs[0]["status"] == "present" and recs[0]["size"] == 0
    assert recs[0]["problem"] == "empty file (0 bytes)" and recs[0]["seconds"] is None
    assert recs[1]["seconds"] == 1.0
    assert recs[1]["problem"] == (
        "truncated: header promises 64000 bytes of audio, file holds 16000"
    )


def test_missing_recording_shows_where_it_was_expected(cdr: ScratchCdr) -> None:
    cdr.insert([leg(UID, recordingfile=NAME)])
    rec = json.loads(cdr.cti("recordings", UID, "--json").out)["recordings"][0]
    assert rec["status"] == "missing"
    assert rec["path"] == str(cdr.recordings / "2026/11/25" / NAME)


def test_unmounted_recordings_folder_is_warned(cdr: ScratchCdr) -> None:
    cdr.insert([leg(UID, recordingfile=NAME)])
    cdr.recordings.rmdir()
    res = cdr.cti("recordings", UID, "--json")
    assert res.code == 0
    assert f"recordings folder {cdr.recordings} is not there" in res.err
    assert json.loads(res.out)["recordings"][0]["status"] == "missing"


def test_bare_name_without_date_is_found_by_calldate(cdr: ScratchCdr) -> None:
    put_recording(cdr, "q-support.wav", wav_bytes(1.0), day="2026/11/24")
    cdr.insert([leg(UID, calldate="2026-11-24 23:59:58", recordingfile="q-support.wav")])
    rec = json.loads(cdr.cti("recordings", UID, "--json").out)["recordings"][0]
    assert rec["status"] == "present" and rec["seconds"] == 1.0


# ---------------------------------------------------------------- copying


def test_copy_to_copies_each_recording_once_and_never_overwrites(
    cdr: ScratchCdr, tmp_path: Path
) -> None:
    cdr.insert(queue_call_rung_twice())
    source = put_recording(cdr, NAME, wav_bytes(2.0))
    out_dir = tmp_path / "export"

    first = cdr.cti_process("recordings", UID, "--copy-to", str(out_dir))
    second = cdr.cti("recordings", UID, "--json", "--copy-to", str(out_dir))

    assert first.code == 0 and second.code == 0, first.err + second.err
    assert f"copied to {out_dir / NAME} ({source.stat().st_size} bytes, size checked)" in first.out
    copied = json.loads(second.out)["recordings"][0]["copied_to"]
    assert copied == str(out_dir / NAME.replace(".wav", "-1.wav"))
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([NAME, Path(copied).name])
    for p in out_dir.iterdir():
        assert p.read_bytes() == source.read_bytes()


# ---------------------------------------------------------------- database problems


def test_wrong_password_names_the_keys_not_the_secret(cdr: ScratchCdr) -> None:
    cdr.write_files(password="not-the-password-xyz")
    res = cdr.cti("recordings", UID)
    assert res.code == 1
    assert f"access denied for user '{cdr.user}'" in res.err
    assert "cti.cdr.password" in res.err and str(cdr.dbaccess) in res.err
    assert "not-the-password-xyz" not in res.err + res.out


def test_database_down_names_host_and_port(cdr: ScratchCdr) -> None:
    port = closed_port()
    cdr.write_files(url=f"jdbc:mysql://127.0.0.1:{port}/{cdr.database}")
    res = cdr.cti("calls")
    assert res.code == 1
    assert f"cannot connect to the CDR database at 127.0.0.1:{port}" in res.err
    assert "Connection refused" in res.err


def test_unknown_database_and_table_are_told_apart(cdr: ScratchCdr) -> None:
    server = cdr.server
    cdr.write_files(url=f"mysql://{server.host}:{server.port}/{cdr.database}_nope")
    res = cdr.cti("recordings", UID)
    assert res.code == 1
    # The SELECT-only user may not even see the other database: MariaDB says 1044.
    assert f"{cdr.database}_nope" in res.err
    assert "unknown database" in res.err or "may not use database" in res.err

    cdr.write_files()
    cdr.dbaccess.write_text(
        cdr.dbaccess.read_text().replace("cti.cdr.table=cdr", "cti.cdr.table=cdr_old")
    )
    res = cdr.cti("recordings", UID)
    assert res.code == 1
    assert f"no table {cdr.database}.cdr_old" in res.err and "cti.cdr.table" in res.err


def test_tls_required_but_server_has_none(cdr: ScratchCdr) -> None:
    with cdr.server.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@have_ssl")
        row = cur.fetchone()
    if row is None or row[0] == "YES":  # the fixture's private mariadbd has no TLS set up
        unavailable("this MariaDB speaks TLS")
    url = f"jdbc:mysql://{cdr.server.host}:{cdr.server.port}/{cdr.database}?sslMode=REQUIRED"
    cdr.write_files(url=url)
    res = cdr.cti("recordings", UID)
    assert res.code == 1
    assert "TLS to the CDR database" in res.err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("cti.cdr.table=cdr", "cti.cdr.table=cdr`; DROP TABLE cdr"), "must be a table name"),
        (("cti.cdr.table=cdr", "#"), "key cti.cdr.table is missing"),
        (("cti.cdr.url=", "#"), "key cti.cdr.url is missing"),
        (("jdbc:mysql:", "jdbc:postgresql:"), "is not a MySQL/MariaDB URL"),
    ],
)
def test_broken_dbaccess_is_a_usage_error(
    cdr: ScratchCdr, edit: tuple[str, str], message: str
) -> None:
    cdr.dbaccess.write_text(cdr.dbaccess.read_text().replace(*edit))
    res = cdr.cti("recordings", UID)
    assert res.code == 2
    assert message in res.err and str(cdr.dbaccess) in res.err


def test_unset_dbaccess_tells_how_to_set_it(cdr: ScratchCdr) -> None:
    cdr.config.write_text("")
    res = cdr.cti("calls")
    assert res.code == 2 and "cti configure --dbaccess" in res.err


# ---------------------------------------------------------------- older schemas, indexes


def test_old_schema_works_for_what_it_has(mariadb: MariaDB, tmp_path: Path) -> None:
    gone = ("recordingfile", "linkedid", "did", "cnum", "cnam", "sequence")
    with scratch_cdr(mariadb, tmp_path, drop_columns=gone) as cdr:
        row = {k: v for k, v in leg(UID).items() if k not in gone}
        cdr.insert([row, {**row, "dstchannel": "PJSIP/102-00000003", "billsec": 0,
                          "disposition": "NO ANSWER"}])  # fmt: skip

        res = cdr.cti("recordings", UID, "--json")
        journal = cdr.cti("calls", "--json")

    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert len(data["rows"]) == 2 and data["recordings"] == []
    assert set(gone) <= set(data["missing_columns"])
    for col in ("recordingfile", "linkedid", "did"):
        assert f"has no {col} column" in res.err
    (call,) = json.loads(journal.out)
    assert call["answered_by"] == ["101"] and call["recording"] == "unknown"


def test_missing_indexes_are_warned_with_the_fix(mariadb: MariaDB, tmp_path: Path) -> None:
    with scratch_cdr(mariadb, tmp_path, indexes=("calldate",)) as cdr:
        cdr.insert([leg(UID)])
        res = cdr.cti("recordings", UID)
    assert res.code == 0
    table = f"`{cdr.database}`.`cdr`"
    assert f"ALTER TABLE {table} ADD INDEX `uniqueid` (`uniqueid`);" in res.err
    assert f"ALTER TABLE {table} ADD INDEX `linkedid` (`linkedid`);" in res.err
    assert res.err.count("has no index") == 2


def test_indexed_table_gives_no_warning(cdr: ScratchCdr) -> None:
    cdr.insert([leg(UID)])
    cdr.admin("ALTER TABLE cdr DROP INDEX linkedid")
    res = cdr.cti("recordings", UID)
    assert res.err.count("has no index") == 1 and "`linkedid`" in res.err
    cdr.admin("ALTER TABLE cdr ADD INDEX linkedid (linkedid)")
    assert cdr.cti("recordings", UID).err == ""


# ---------------------------------------------------------------- cti calls


def journal_rows(now: datetime) -> list[dict[str, object]]:
    def at(minutes: int) -> str:
        return (now - timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")

    return [
        # answered by 102 after the queue rang 101 as well; recorded
        leg("1795650001.1", calldate=at(5), dstchannel="PJSIP/101-00000011",
            disposition="NO ANSWER", billsec=0, recordingfile="a.wav", sequence=1),
        leg("1795650001.1", calldate=at(5), dstchannel="PJSIP/102-00000012",
            billsec=42, recordingfile="a.wav", sequence=2),
        # missed: the queue answered the caller, no person did
        leg("1795650002.1", calldate=at(20), src="84951234567", clid="<84951234567>", cnam="",
            cnum="84951234567", dstchannel="", disposition="ANSWERED", billsec=30, sequence=3),
        leg("1795650002.1", calldate=at(20), src="84951234567", clid="<84951234567>", cnam="",
            cnum="84951234567", dstchannel="PJSIP/101-00000013", disposition="NO ANSWER",
            billsec=0, sequence=4),
        # three hours ago, answered by 103
        leg("1795650003.1", calldate=at(180), src="+74957654321", clid="", cnum="+74957654321",
            cnam="", dstchannel="PJSIP/103-00000014", billsec=7, sequence=5),
    ]  # fmt: skip


def test_journal_one_line_per_call(cdr: ScratchCdr) -> None:
    now = datetime.now().replace(microsecond=0)
    cdr.insert(journal_rows(now))
    (cdr.recordings / "a.wav").write_bytes(wav_bytes(1.0))

    calls = json.loads(cdr.cti("calls", "--json").out)

    assert [c["uniqueid"] for c in calls] == ["1795650001.1", "1795650002.1", "1795650003.1"]
    answered, missed, old = calls
    assert answered["answered"] and answered["answered_by"] == ["102"]
    assert answered["talk_seconds"] == 42 and answered["recording"] == "present"
    assert answered["caller_name"] == "Иван Петров" and answered["legs"] == 2
    assert not missed["answered"] and missed["answered_by"] == [] and missed["recording"] == "none"
    assert old["answered_by"] == ["103"]
    # one spelling with the call events (`cti watch --json`, webhooks): dialed
    assert all("dialed" in c and "dialled" not in c for c in calls)

    text = cdr.cti_process("calls")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    first = next(line for line in lines if "1795650001.1" in line)
    assert "Иван Петров <+79161234567>" in first and "answered" in first and "0:42" in first
    assert "102" in first and "present" in first
    assert "missed" in next(line for line in lines if "1795650002.1" in line)


def test_journal_since_and_limit(cdr: ScratchCdr) -> None:
    now = datetime.now().replace(microsecond=0)
    cdr.insert(journal_rows(now))

    recent = json.loads(cdr.cti("calls", "--since", "1h", "--json").out)
    assert [c["uniqueid"] for c in recent] == ["1795650001.1", "1795650002.1"]
    limited = json.loads(cdr.cti("calls", "--limit", "1", "--json").out)
    assert [c["uniqueid"] for c in limited] == ["1795650001.1"]
    day = (now - timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(json.loads(cdr.cti("calls", "--since", day, "--json").out)) == 3
    future = (now + timedelta(days=2)).strftime("%Y-%m-%d")
    empty = cdr.cti("calls", "--since", future)
    assert empty.code == 0 and "no calls since" in empty.out


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("8 916 123-45-67", ["1795650001.1"]),
        ("+7 (495) 123-45-67", ["1795650002.1"]),
        ("74957654321", ["1795650003.1"]),
        ("102", ["1795650001.1"]),  # the operator who answered
        ("8 916 000-00-00", []),
    ],
)
def test_journal_number_matches_after_normalising(
    cdr: ScratchCdr, number: str, expected: list[str]
) -> None:
    cdr.insert(journal_rows(datetime.now().replace(microsecond=0)))
    res = cdr.cti("calls", "--number", number, "--json")
    assert res.code == 0, res.err
    assert [c["uniqueid"] for c in json.loads(res.out)] == expected


@pytest.mark.parametrize("args", [["--since", "yesterday"], ["--since", "5x"], ["--number", "abc"]])
def test_journal_bad_options_are_usage_errors(cdr: ScratchCdr, args: list[str]) -> None:
    res = cdr.cti("calls", *args)
    assert res.code == 2 and res.err.startswith("cti: --")


def test_number_search_defaults_to_30_days(cdr: ScratchCdr) -> None:
    old = (datetime.now() - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S")
    cdr.insert([leg("1795000000.1", calldate=old)])

    recent = cdr.cti("calls", "--number", "+79161234567", "--json")
    assert json.loads(recent.out) == [] and "searched the last 30 days" in recent.err
    wider = cdr.cti("calls", "--number", "+79161234567", "--since", "2000-01-01", "--json")
    assert [c["uniqueid"] for c in json.loads(wider.out)] == ["1795000000.1"]
    assert wider.err == ""
