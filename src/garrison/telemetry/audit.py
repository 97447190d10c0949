"""The tamper-evident audit log: hash-chained JSON lines, made durable by group commit.

Each line is one JSON record: its body in canonical JSON (sorted keys, no whitespace, ASCII only),
with ``hash`` added last::

    {"action":"join_token.create","actor":"admin-token","prev":"<hex>","seq":7,"ts":1795440000.5,"hash":"<hex>"}

``seq`` is the record's 1-based line number, ``prev`` the ``hash`` of the line before it (``GENESIS``
for line 1) and ``hash`` the SHA-256 of the body: the line up to ``,"hash":`` closed with ``}``. The
body must be byte-for-byte the canonical form of itself, so any edit, insertion, deletion or
reordering breaks the chain at a line ``verify_log`` names. What a chain alone cannot show is the
removal of records *from the end*: the rest is still a valid chain. ``verify_log`` therefore returns
the count and last hash for the operator to keep elsewhere (an anchor) and checks them when given.
The hash is unkeyed on purpose: anyone can verify a copy, and whoever can rewrite the file can rewrite
it whole anyway; only the anchor catches that.

``append`` returns after its record is on disk (``fdatasync``); concurrent appenders share one sync:
the first to find none in progress writes everything queued and syncs (the leader), the others wait,
and whoever is still not durable afterwards leads the next round. A failed write or sync poisons the
log: every later ``append`` raises ``AuditError`` (fail closed), and reopening repairs the file.

Crash recovery (the choice made here): on open, an incomplete last line — bytes after the last newline,
left by a write a crash interrupted — is truncated with a warning, and an ``audit_recovered`` record
(length and SHA-256 of the removed bytes) is appended. Nothing acknowledged is lost that way: a record
is acknowledged only once its whole line, newline included, is synced. A last *complete* line that is
not a valid record is refused (``AuditError``): that is damage or tampering, not a crash, and needs a
human with ``garrison audit verify``. Records never hold secrets: pass values through ``hmac_value``.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from garrison.errors import StoreError

log = logging.getLogger("garrison.audit")

GENESIS: Final = "0" * 64
MAX_RECORD_BYTES: Final = 64 * 1024
MAX_TORN_BYTES: Final = 16 * 1024 * 1024  # more than this after the last newline is not a torn write
MAX_DEPTH: Final = 32
RESERVED: Final = frozenset({"seq", "ts", "action", "prev", "hash"})
_HEX: Final = frozenset("0123456789abcdef")
_CHUNK: Final = 64 * 1024
_HASH_OPEN: Final = b',"hash":"'
_SUFFIX: Final = len(_HASH_OPEN) + 64 + len(b'"}\n')
_sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class AuditError(StoreError):
    """The audit log cannot be opened or written; the action it would record must not proceed."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def hmac_value(secret_key: bytes, value: str | bytes) -> str:
    """``hmac-sha256:<hex>`` of ``value``: equal values stay comparable, the value never reaches a log."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return "hmac-sha256:" + hmac.new(secret_key, data, hashlib.sha256).hexdigest()


def _check_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise TypeError(f"audit field {where}: nested more than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"audit field {where}: {value!r} is not a JSON number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise TypeError(f"audit field {where}: key {k!r} is not a string")
            _check_value(item, f"{where}.{k}", depth + 1)
        return
    raise TypeError(f"audit field {where}: {type(value).__name__} is not a JSON value")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts: float
    action: str
    fields: Mapping[str, Any]
    prev: str
    hash: str

    def __repr__(self) -> str:
        return f"<AuditRecord seq={self.seq} action={self.action} hash={self.hash[:12]}>"


def _is_hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and _HEX.issuperset(v)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("duplicate key")
    return d


def seal(body: Mapping[str, Any]) -> tuple[bytes, str]:
    """(the line, its hash) for a record body; the hash goes last so the body's bytes are the line's."""
    raw = canonical(body)
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + _HASH_OPEN + digest.encode() + b'"}\n', digest


def parse_line(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) if ``line`` (newline included) is a self-consistent record, else (None, why)."""
    if not line.endswith(b"\n"):
        return None, "incomplete line (no newline)"
    tail, digest = line[-_SUFFIX:], line[-_SUFFIX + len(_HASH_OPEN) : -3].decode("ascii", "replace")
    if len(line) <= _SUFFIX or not tail.startswith(_HASH_OPEN) or not tail.endswith(b'"}\n'):
        return None, "no hash at the end of the line"
    body = line[:-_SUFFIX] + b"}"
    try:
        rec = json.loads(body.decode("ascii"), parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not a JSON record ({type(exc).__name__})"
    if not isinstance(rec, dict) or "hash" in rec:
        return None, "not a JSON object with one hash"
    seq, ts, action = rec.get("seq"), rec.get("ts"), rec.get("action")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1):
        return None, "missing or bad seq"
    if not (isinstance(ts, int | float) and not isinstance(ts, bool)) or not isinstance(action, str):
        return None, "missing or bad ts/action"
    if not _is_hex64(rec.get("prev")) or not _is_hex64(digest):
        return None, "missing or bad prev/hash"
    if canonical(rec) != body:
        return None, "not in canonical form (the line was edited)"
    if hashlib.sha256(body).hexdigest() != digest:
        return None, "hash does not match the record's content (the record was edited)"
    rec["hash"] = digest
    return rec, None


def _rfind_newline(fd: int, before: int, limit: int) -> int | None:
    """Offset of the last ``\\n`` before offset ``before``: -1 if none, None if not in ``limit`` bytes."""
    pos = before
    while pos > 0 and before - pos < limit:
        n = min(_CHUNK, pos, limit - (before - pos))
        pos -= n
        i = os.pread(fd, n, pos).rfind(b"\n")
        if i >= 0:
            return pos + i
    return -1 if pos == 0 else None


class AuditLog:
    """An open, single-writer (``flock``) audit log. Thread-safe; ``append`` blocks until durable."""

    def __init__(
        self, fd: int, path: Path, seq: int, prev: str, key: bytes | None, clock: Callable[[], float]
    ) -> None:
        self.path = path
        self._fd = fd
        self._key = key
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._seq = seq  # last assigned
        self._prev = prev
        self._durable_seq = seq
        self._durable_hash = prev
        self._pending: list[bytes] = []
        self._flushing = False
        self._failed: str | None = None
        self._closed = False
        self.syncs = 0  # completed group commits; appended records / syncs is the batching factor

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, key: bytes | None = None, clock: Callable[[], float] = time.time
    ) -> AuditLog:
        """Open ``path`` for appending, creating it 0600; continue its chain (see the module docstring)."""
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise ValueError("audit HMAC key must be bytes, at least 16 bytes long")
        p = Path(path)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        try:
            try:
                fd = os.open(p, flags | os.O_CREAT | os.O_EXCL, 0o600)
                created = True
            except FileExistsError:
                fd = os.open(p, flags)
                created = False
        except OSError as exc:
            raise AuditError(f"cannot open audit log {p}: {exc.strerror}") from None
        try:
            if created:
                _sync_dir(p.parent)
            return cls._continue(fd, p, key, clock)
        except OSError as exc:
            os.close(fd)
            raise AuditError(f"cannot open audit log {p}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def _continue(cls, fd: int, p: Path, key: bytes | None, clock: Callable[[], float]) -> AuditLog:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AuditError(f"audit log {p} is open in another writer") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"audit log {p} is not a regular file")
        if st.st_mode & 0o077:
            log.warning("audit log %s had mode %o; tightened to 600", p, stat.S_IMODE(st.st_mode))
            os.fchmod(fd, 0o600)
        size = st.st_size
        last_nl = _rfind_newline(fd, size, MAX_TORN_BYTES + 1)
        if last_nl is None:
            raise AuditError(f"audit log {p}: over {MAX_TORN_BYTES} bytes after the last complete record")
        end = last_nl + 1
        torn = os.pread(fd, size - end, end) if size > end else b""
        seq, prev = 0, GENESIS
        if last_nl >= 0:
            start_nl = _rfind_newline(fd, last_nl, MAX_RECORD_BYTES)
            rec, problem = (
                (None, f"longer than {MAX_RECORD_BYTES} bytes")
                if start_nl is None
                else parse_line(os.pread(fd, end - start_nl - 1, start_nl + 1))
            )
            if rec is None:
                raise AuditError(
                    f"audit log {p}: the last record is invalid ({problem}); refusing to append —"
                    " run `garrison audit verify` and move the file aside"
                )
            seq, prev = rec["seq"], rec["hash"]
        self = cls(fd, p, seq, prev, key, clock)
        if torn:
            log.warning("audit log %s: truncating an incomplete last line (%d bytes)", p, len(torn))
            os.ftruncate(fd, end)
            _sync(fd)
            self.append(
                "audit_recovered",
                truncated_bytes=len(torn),
                truncated_sha256=hashlib.sha256(torn).hexdigest(),
                detail="incomplete last line removed on open (interrupted write)",
            )
        return self

    def hmac(self, value: str | bytes) -> str:
        """``hmac_value`` with this log's key, for values that must be correlatable but never logged."""
        if self._key is None:
            raise RuntimeError("this audit log was opened without an HMAC key")
        return hmac_value(self._key, value)

    @property
    def problem(self) -> str | None:
        """Why this log takes no more records ("closed" or the write error), or None if it is healthy."""
        return "closed" if self._closed else self._failed

    @property
    def anchor(self) -> tuple[int, str]:
        """(count, last hash) of what is durable now: record these elsewhere to detect truncation."""
        with self._cond:
            return self._durable_seq, self._durable_hash

    def append(self, action: str, **fields: Any) -> AuditRecord:
        """Add one record; returns once it is on disk. Non-JSON values raise ``TypeError`` here."""
        if not isinstance(action, str) or not action:
            raise TypeError("audit action must be a non-empty string")
        if clash := RESERVED.intersection(fields):
            raise TypeError(f"audit fields may not be named {sorted(clash)}")
        for k, v in fields.items():
            _check_value(v, k)
        with self._cond:
            if self._closed or self._failed is not None:
                raise AuditError(f"audit log {self.path} is {self._failed or 'closed'}")
            ts = float(self._clock())  # under the lock: ts follows seq as far as the clock allows
            seq = self._seq + 1
            body = {**fields, "seq": seq, "ts": ts, "action": action, "prev": self._prev}
            line, digest = seal(body)
            if len(line) > MAX_RECORD_BYTES:
                raise ValueError(f"audit record of {len(line)} bytes exceeds {MAX_RECORD_BYTES}")
            self._seq, self._prev = seq, digest
            self._pending.append(line)
            while self._durable_seq < seq:
                if self._failed is not None:
                    raise AuditError(f"audit log {self.path}: {self._failed}")
                if self._flushing:
                    self._cond.wait()
                else:
                    self._flush_locked()
        return AuditRecord(seq, ts, action, dict(fields), body["prev"], digest)

    def _flush_locked(self) -> None:
        """Write and sync everything queued; the lock is released during the I/O so others can queue."""
        data, last, last_hash = b"".join(self._pending), self._seq, self._prev
        self._pending.clear()
        self._flushing = True
        self._cond.release()
        error: str | None = "write interrupted; reopen the log to recover"
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            _sync(self._fd)
            error = None
        except OSError as exc:
            error = f"write failed ({exc.strerror}); reopen the log to recover"
        finally:
            self._cond.acquire()
            self._flushing = False
            if error is None:
                self._durable_seq, self._durable_hash = last, last_hash
                self.syncs += 1
            else:
                log.error("audit log %s: %s", self.path, error)
                self._failed = error
            self._cond.notify_all()

    def close(self) -> None:
        """Wait for queued records to be durable, then release the file. Idempotent."""
        with self._cond:
            if self._closed:
                return
            while self._flushing or (self._pending and self._failed is None):
                if self._flushing:
                    self._cond.wait()
                else:
                    self._flush_locked()
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self._failed and "failed") or "open"
        return f"<AuditLog {self.path} seq={self._durable_seq} {state}>"


def _sync_dir(d: Path) -> None:
    """Make a new file's directory entry durable too (a synced file nobody can find is lost)."""
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of ``verify_log``. ``count``/``last_hash`` cover the valid prefix when ``ok`` is false."""

    ok: bool
    count: int
    last_hash: str
    first_bad_line: int | None = None
    problem: str | None = None
    anchored: bool = False  # an --expect-last/--expect-count anchor was given and checked


def verify_log(
    path: str | os.PathLike[str], *, expect_last: str | None = None, expect_count: int | None = None
) -> VerifyResult:
    """Check the whole chain of ``path``, then the anchor if given. Raises ``OSError`` if unreadable.

    The anchor is what an earlier ``verify_log`` (or ``AuditLog.anchor``) returned: record number
    ``expect_count`` must exist and, with ``expect_last``, carry that hash (the log may have grown since).
    ``expect_last`` alone must be the hash of some record.
    """
    anchored = expect_last is not None or expect_count is not None
    count, prev = 0, GENESIS
    seen_anchor = expect_last == GENESIS and expect_count in (None, 0)
    with open(path, "rb") as f:  # readline(limit) bounds the memory a hostile file can take
        while line := f.readline(MAX_RECORD_BYTES + 1):
            n = count + 1
            rec, problem = _chain_link(line, n, prev)
            if rec is None:
                return VerifyResult(False, count, prev, n, f"line {n}: {problem}", anchored)
            count, prev = n, rec["hash"]
            if prev == expect_last and expect_count in (None, n):
                seen_anchor = True
    if expect_count is not None and count < expect_count:
        problem = f"truncated: the anchor says at least {expect_count} records, the file has {count}"
        return VerifyResult(False, count, prev, count + 1, problem, anchored)
    if expect_last is not None and not seen_anchor:
        where = f"record {expect_count}" if expect_count is not None else "any record"
        problem = (
            f"the anchor hash is not the hash of {where}: records were removed from the end,"
            " or the chain was rewritten"
        )
        return VerifyResult(False, count, prev, expect_count, problem, anchored)
    return VerifyResult(True, count, prev, anchored=anchored)


def _chain_link(line: bytes, n: int, prev: str) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) if ``line`` is a valid record that is line ``n`` following ``prev``."""
    if not line.endswith(b"\n"):
        if len(line) > MAX_RECORD_BYTES:
            return None, f"longer than {MAX_RECORD_BYTES} bytes"
        return None, (
            "incomplete last line (a write interrupted by a crash, or tampering);"
            " reopening the log truncates it and records audit_recovered"
        )
    rec, problem = parse_line(line)
    if rec is None:
        return None, problem
    if rec["seq"] != n:
        return None, f"seq is {rec['seq']}, expected {n} (records removed, moved or inserted)"
    if rec["prev"] != prev:
        return None, f"prev is not the hash of line {n - 1} (chain broken)"
    return rec, None


__all__ = [
    "GENESIS",
    "MAX_RECORD_BYTES",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "VerifyResult",
    "canonical",
    "hmac_value",
    "parse_line",
    "seal",
    "verify_log",
]
