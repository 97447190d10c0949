"""AuditLog: a hash chain on disk whose every edit, deletion, reordering or insertion is found by line."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garrison.telemetry.audit import (
    GENESIS,
    MAX_RECORD_BYTES,
    AuditError,
    AuditLog,
    hmac_value,
    verify_log,
)

KEY = b"k" * 32
T0 = 1_795_000_000.25


def clock() -> Callable[[], float]:
    t = [T0]

    def now() -> float:
        t[0] += 1.0
        return t[0]

    return now


def write_log(path: Path, n: int) -> None:
    with AuditLog.open(path, clock=clock()) as log:
        for i in range(n):
            log.append("svid.revoke", actor="admin-token", serial=f"{i:x}", n=i)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def put(path: Path, ls: list[bytes]) -> None:
    path.write_bytes(b"".join(ls))


def canonical(obj: Any) -> bytes:  # written from the spec, not imported: an independent oracle
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sealed(rec: dict[str, Any]) -> bytes:
    body = canonical({k: v for k, v in rec.items() if k != "hash"})
    return body[:-1] + b',"hash":"' + hashlib.sha256(body).hexdigest().encode() + b'"}\n'


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    p = tmp_path / "audit.log"
    write_log(p, 6)
    return p


# --- the chain ------------------------------------------------------------------------------------


def test_records_form_a_chain_that_an_independent_reading_of_the_spec_verifies(log_path: Path) -> None:
    prev = GENESIS
    for n, raw in enumerate(lines(log_path), start=1):
        rec = json.loads(raw)
        assert raw == sealed(rec)
        assert (rec["seq"], rec["prev"], rec["action"], rec["n"]) == (n, prev, "svid.revoke", n - 1)
        assert rec["ts"] == T0 + n
        prev = rec["hash"]
    r = verify_log(log_path)
    assert (r.ok, r.count, r.last_hash, r.first_bad_line, r.problem, r.anchored) == (
        True, 6, prev, None, None, False,
    )  # fmt: skip


def test_append_returns_the_record_it_wrote(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "a.log", clock=clock()) as log:
        first = log.append("client.put", actor="admin-token", client_id="ms2")
        second = log.append("client.delete", actor="admin-token", client_id="ms2")
        assert log.anchor == (2, second.hash)
    assert (first.seq, first.prev, first.fields) == (1, GENESIS, {"actor": "admin-token", "client_id": "ms2"})
    assert (second.seq, second.prev) == (2, first.hash)
    assert repr(second) == f"<AuditRecord seq=2 action=client.delete hash={second.hash[:12]}>"
    assert json.loads(lines(tmp_path / "a.log")[1])["hash"] == second.hash


def test_an_empty_log_verifies_as_zero_records(tmp_path: Path) -> None:
    AuditLog.open(tmp_path / "a.log").close()
    r = verify_log(tmp_path / "a.log")
    assert (r.ok, r.count, r.last_hash) == (True, 0, GENESIS)


# --- tampering, each found at the line where the chain breaks -------------------------------------


def edit_value(ls: list[bytes]) -> None:
    ls[2] = ls[2].replace(b'"actor":"admin-token"', b'"actor":"someone-else"')


def edit_whitespace(ls: list[bytes]) -> None:
    ls[2] = ls[2].replace(b'","', b'", "', 1)


def edit_and_rehash(ls: list[bytes]) -> None:
    rec = json.loads(ls[2])
    ls[2] = sealed({**rec, "actor": "someone-else"})


def delete(ls: list[bytes]) -> None:
    del ls[2]


def delete_two_in_the_middle(ls: list[bytes]) -> None:
    del ls[2:4]


def swap(ls: list[bytes]) -> None:
    ls[2], ls[3] = ls[3], ls[2]


def insert_forged(ls: list[bytes]) -> None:
    before = json.loads(ls[1])
    forged = {"seq": 3, "ts": before["ts"] + 0.5, "action": "svid.issue", "actor": "admin-token"}
    ls.insert(2, sealed({**forged, "prev": before["hash"]}))


def duplicate_key(ls: list[bytes]) -> None:
    ls[2] = ls[2].replace(b'{"action"', b'{"actor":"x","action"')


def not_json(ls: list[bytes]) -> None:
    ls[2] = b"garbage\n"


def non_ascii(ls: list[bytes]) -> None:
    ls[2] = ls[2].replace(b"admin-token", "admin-tökèn".encode())


def nan_value(ls: list[bytes]) -> None:
    ls[2] = ls[2].replace(b'"n":2', b'"n":NaN')


def hash_in_body(ls: list[bytes]) -> None:
    ls[2] = ls[2].replace(b'{"action"', b'{"hash":"x","action"')


def empty_line(ls: list[bytes]) -> None:
    ls.insert(2, b"\n")


@pytest.mark.parametrize(
    ("tamper", "line", "problem"),
    [
        pytest.param(edit_value, 3, "hash does not match", id="a-field-edited"),
        pytest.param(edit_whitespace, 3, "not in canonical form", id="whitespace-added"),
        pytest.param(
            edit_and_rehash, 4, "prev is not the hash of line 3", id="edited-and-own-hash-recomputed"
        ),
        pytest.param(delete, 3, "seq is 4, expected 3", id="a-line-deleted"),
        pytest.param(delete_two_in_the_middle, 3, "seq is 5, expected 3", id="middle-truncated"),
        pytest.param(swap, 3, "seq is 4, expected 3", id="two-lines-swapped"),
        pytest.param(insert_forged, 4, "seq is 3, expected 4", id="forged-line-inserted-with-valid-hash"),
        pytest.param(duplicate_key, 3, "not a JSON record", id="duplicate-key-smuggled"),
        pytest.param(not_json, 3, "no hash at the end of the line", id="line-replaced-by-garbage"),
        pytest.param(non_ascii, 3, "not a JSON record", id="non-ascii-bytes"),
        pytest.param(nan_value, 3, "not a JSON record", id="nan-constant"),
        pytest.param(empty_line, 3, "no hash at the end of the line", id="blank-line-inserted"),
        pytest.param(hash_in_body, 3, "not a JSON object with one hash", id="second-hash-in-body"),
    ],
)
def test_tampering_is_reported_at_the_first_broken_line(
    log_path: Path, tamper: Callable[[list[bytes]], None], line: int, problem: str
) -> None:
    ls = lines(log_path)
    tamper(ls)
    put(log_path, ls)
    good = json.loads(ls[line - 2])["hash"]
    r = verify_log(log_path)
    assert not r.ok
    assert r.first_bad_line == line
    assert r.problem is not None and r.problem.startswith(f"line {line}: ") and problem in r.problem
    assert (r.count, r.last_hash) == (line - 1, good)  # the valid prefix


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_is_found_at_its_own_line(log_path: Path, data: st.DataObject) -> None:
    original = log_path.read_bytes()
    pos = data.draw(st.integers(0, len(original) - 1), label="offset")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != original[pos]), label="new byte")
    tampered = original[:pos] + bytes([byte]) + original[pos + 1 :]
    tmp = log_path.with_suffix(".tampered")
    tmp.write_bytes(tampered)
    r = verify_log(tmp)
    assert not r.ok and r.first_bad_line == original.count(b"\n", 0, pos) + 1


def test_a_rewritten_chain_passes_alone_and_is_caught_by_the_anchor(log_path: Path) -> None:
    anchor = verify_log(log_path)
    ls = lines(log_path)
    prev = json.loads(ls[1])["hash"]
    rewritten = ls[:2]
    for raw in ls[3:]:  # drop line 3, renumber and rehash everything after it
        rec = {**json.loads(raw), "seq": len(rewritten) + 1, "prev": prev}
        rewritten.append(sealed(rec))
        prev = json.loads(rewritten[-1])["hash"]
    put(log_path, rewritten)
    assert verify_log(log_path).ok  # what a hash chain alone cannot see
    r = verify_log(log_path, expect_last=anchor.last_hash, expect_count=anchor.count)
    assert not r.ok and r.anchored and "truncated" in (r.problem or "")


# --- truncation of the tail: only an anchor can see it --------------------------------------------


def test_removing_records_from_the_end_needs_the_anchor_to_be_seen(log_path: Path) -> None:
    anchor = verify_log(log_path)
    put(log_path, lines(log_path)[:4])

    alone = verify_log(log_path)
    assert alone.ok and alone.count == 4 and not alone.anchored

    by_count = verify_log(log_path, expect_count=anchor.count)
    assert not by_count.ok and by_count.first_bad_line == 5
    assert by_count.problem == "truncated: the anchor says at least 6 records, the file has 4"

    by_hash = verify_log(log_path, expect_last=anchor.last_hash)
    assert not by_hash.ok and "anchor hash is not the hash of any record" in (by_hash.problem or "")

    both = verify_log(log_path, expect_last=anchor.last_hash, expect_count=anchor.count)
    assert not both.ok


def test_an_anchor_still_holds_after_the_log_grows(log_path: Path) -> None:
    anchor = verify_log(log_path)
    with AuditLog.open(log_path) as log:
        log.append("signing_key.rotate", actor="admin-token")
    r = verify_log(log_path, expect_last=anchor.last_hash, expect_count=anchor.count)
    assert r.ok and r.anchored and r.count == 7
    wrong_position = verify_log(log_path, expect_last=anchor.last_hash, expect_count=5)
    assert not wrong_position.ok and wrong_position.first_bad_line == 5


# --- reopening, crashes, the file ------------------------------------------------------------------


def test_reopening_continues_the_chain(log_path: Path) -> None:
    last = json.loads(lines(log_path)[-1])
    with AuditLog.open(log_path) as log:
        rec = log.append("svid.issue", actor="admin-token")
    assert (rec.seq, rec.prev) == (7, last["hash"])
    assert verify_log(log_path).count == 7


def test_a_torn_last_line_is_truncated_and_recorded_on_open(log_path: Path) -> None:
    torn = lines(log_path)[-1][:40]  # what a crash mid-write leaves
    with log_path.open("ab") as f:
        f.write(torn)
    r = verify_log(log_path)
    assert not r.ok and r.first_bad_line == 7 and "incomplete last line" in (r.problem or "")

    with AuditLog.open(log_path) as log:
        log.append("svid.issue", actor="admin-token")
    recovered = json.loads(lines(log_path)[6])
    assert recovered["action"] == "audit_recovered" and recovered["seq"] == 7
    assert recovered["truncated_bytes"] == 40
    assert recovered["truncated_sha256"] == hashlib.sha256(torn).hexdigest()
    assert verify_log(log_path).count == 8


def test_a_file_that_is_only_a_torn_line_restarts_from_genesis(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b'{"action":"svid.iss')
    AuditLog.open(p).close()
    rec = json.loads(p.read_bytes())
    assert (rec["seq"], rec["prev"], rec["action"]) == (1, GENESIS, "audit_recovered")


def test_megabytes_without_a_newline_are_not_taken_for_a_torn_write(log_path: Path) -> None:
    with log_path.open("ab") as f:
        f.write(b"\0" * (16 * 1024 * 1024 + 1))
    with pytest.raises(AuditError, match="over 16777216 bytes after the last complete record"):
        AuditLog.open(log_path)


def test_an_invalid_last_record_is_refused_not_repaired(log_path: Path) -> None:
    ls = lines(log_path)
    edit_value(ls)  # line 3 is not checked on open, the last line is
    ls[-1] = ls[-1].replace(b"admin-token", b"adm1n-token")
    put(log_path, ls)
    before = log_path.read_bytes()
    with pytest.raises(AuditError, match=r"last record is invalid \(hash does not match"):
        AuditLog.open(log_path)
    assert log_path.read_bytes() == before


def test_an_oversized_last_line_is_refused(log_path: Path) -> None:
    with log_path.open("ab") as f:
        f.write(b"x" * (MAX_RECORD_BYTES + 10) + b"\n")
    with pytest.raises(AuditError, match=f"last record is invalid \\(longer than {MAX_RECORD_BYTES} bytes"):
        AuditLog.open(log_path)
    r = verify_log(log_path)
    assert not r.ok and r.first_bad_line == 7 and "longer than" in (r.problem or "")


def test_a_record_of_exactly_the_maximum_size_is_written_and_reopened(tmp_path: Path) -> None:
    with AuditLog.open(tmp_path / "probe.log", clock=clock()) as log:
        log.append("x", v="")
    fixed = len((tmp_path / "probe.log").read_bytes())
    p = tmp_path / "a.log"
    with AuditLog.open(p, clock=clock()) as log:
        with pytest.raises(ValueError, match="exceeds"):
            log.append("x", v="a" * (MAX_RECORD_BYTES - fixed + 1))
        log.append("x", v="a" * (MAX_RECORD_BYTES - fixed))
    assert len(p.read_bytes()) == MAX_RECORD_BYTES
    with AuditLog.open(p) as log:
        log.append("y")
    assert verify_log(p).count == 2


def test_the_genesis_anchor_matches_an_empty_log(tmp_path: Path) -> None:
    AuditLog.open(tmp_path / "a.log").close()
    assert verify_log(tmp_path / "a.log", expect_last=GENESIS, expect_count=0).ok


def test_new_log_is_0600_and_a_looser_one_is_tightened(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    AuditLog.open(p).close()
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    p.chmod(0o644)
    AuditLog.open(p).close()
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_a_second_writer_is_refused(log_path: Path) -> None:
    with AuditLog.open(log_path), pytest.raises(AuditError, match="open in another writer"):
        AuditLog.open(log_path)
    AuditLog.open(log_path).close()  # released on close


def test_a_directory_or_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=r"cannot open audit log .*: Is a directory"):
        AuditLog.open(tmp_path)
    with pytest.raises(AuditError, match=r"cannot open audit log .*: No such file or directory"):
        AuditLog.open(tmp_path / "missing" / "a.log")
    (tmp_path / "null.log").symlink_to("/dev/null")
    with pytest.raises(AuditError, match="is not a regular file"):
        AuditLog.open(tmp_path / "null.log")


def test_append_after_close_fails_closed(tmp_path: Path) -> None:
    log = AuditLog.open(tmp_path / "a.log")
    log.close()
    log.close()
    assert "closed" in repr(log)
    with pytest.raises(AuditError, match="closed"):
        log.append("svid.issue")


# --- values ----------------------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"key": b"raw-bytes"}, "key: bytes is not a JSON value", id="bytes"),
        pytest.param({"ids": {1, 2}}, "ids: set is not a JSON value", id="set"),
        pytest.param({"obj": Opaque()}, "obj: Opaque is not a JSON value", id="object"),
        pytest.param({"x": {"y": [1, float("nan")]}}, r"x\.y\[1\]: nan is not a JSON number", id="nan"),
        pytest.param({"x": float("inf")}, "inf is not a JSON number", id="inf"),
        pytest.param({"x": {1: "a"}}, "key 1 is not a string", id="int-key"),
        pytest.param({"seq": 99}, "may not be named", id="reserved-seq"),
        pytest.param({"hash": "0" * 64}, "may not be named", id="reserved-hash"),
    ],
)
def test_non_json_values_are_refused_at_the_call_site(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    with AuditLog.open(tmp_path / "a.log") as log:
        with pytest.raises(TypeError, match=message):
            log.append("x", **fields)
        log.append("after")
    assert verify_log(tmp_path / "a.log").count == 1  # the refused record took no place in the chain


def test_deep_nesting_and_oversized_records_are_refused(tmp_path: Path) -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    with AuditLog.open(tmp_path / "a.log") as log:
        with pytest.raises(TypeError, match="nested more than"):
            log.append("x", v=deep)
        with pytest.raises(ValueError, match="exceeds"):
            log.append("x", v="a" * MAX_RECORD_BYTES)
        with pytest.raises(TypeError, match="action"):
            log.append("")
        log.append("x", v=["ok", {"n": 1.5, "t": True, "z": None}], s="ünïcode\n\u2028")
    r = verify_log(tmp_path / "a.log")
    assert r.ok and r.count == 1


def test_a_secret_passed_through_hmac_value_never_reaches_the_file(tmp_path: Path) -> None:
    secret = "s3cr3t-join-token-Zq8"
    with AuditLog.open(tmp_path / "a.log", key=KEY) as log:
        log.append("secret.read", path="kv/db", value=log.hmac(secret))
        log.append("secret.read", path="kv/db", value=hmac_value(KEY, secret.encode()))
        assert KEY.decode() not in repr(log)
    raw = (tmp_path / "a.log").read_bytes()
    assert secret.encode() not in raw and KEY not in raw
    a, b = (json.loads(x)["value"] for x in lines(tmp_path / "a.log"))
    assert a == b and a.startswith("hmac-sha256:") and len(a) == len("hmac-sha256:") + 64
    assert hmac_value(b"x" * 32, secret) != a


def test_hmac_needs_a_real_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        AuditLog.open(tmp_path / "a.log", key=b"short")
    with AuditLog.open(tmp_path / "a.log") as log, pytest.raises(RuntimeError, match="without an HMAC key"):
        log.hmac("x")


# --- concurrency and group commit ------------------------------------------------------------------


def test_eight_threads_lose_nothing_and_share_syncs(tmp_path: Path) -> None:
    p, per_thread, start = tmp_path / "a.log", 60, threading.Barrier(8)
    with AuditLog.open(p) as log:

        def worker(t: int) -> None:
            start.wait()
            for i in range(per_thread):
                log.append("load", thread=t, i=i)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        syncs = log.syncs
    r = verify_log(p)
    assert r.ok and r.count == 8 * per_thread
    seen = Counter((rec["thread"], rec["i"]) for rec in map(json.loads, lines(p)))
    assert set(seen.values()) == {1} and len(seen) == 8 * per_thread
    assert syncs < r.count  # group commit: appenders waiting on a sync were written by the next one


WRITE_FAILURE = """
import resource, signal, sys
from garrison.telemetry.audit import AuditError, AuditLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = AuditLog.open(sys.argv[1])
log.append("first")
resource.setrlimit(resource.RLIMIT_FSIZE, (600, resource.RLIM_INFINITY))
try:
    for _ in range(100):
        log.append("filler", pad="p" * 150)
except AuditError as exc:
    print("failed:", exc)
try:
    log.append("after")
except AuditError as exc:
    print("poisoned:", exc)
"""


def test_a_failed_write_poisons_the_log_and_reopening_repairs_it(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    out = subprocess.run(
        [sys.executable, "-c", WRITE_FAILURE, str(p)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "failed: audit log" in out and "write failed (File too large)" in out
    assert "poisoned: audit log" in out
    assert not verify_log(p).ok  # the failed write left a partial line
    AuditLog.open(p).close()
    r = verify_log(p)
    assert r.ok and json.loads(lines(p)[-1])["action"] == "audit_recovered"
    assert os.path.getsize(p) > 600
