"""Sealing CA keys at rest: XChaCha20-Poly1305 under a KEK from a file, the environment or a command."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest

from garrison.identity.ca import Kek, SealError, generate_kek_file
from garrison.identity.ca.sealing import WRONG_KEK


def test_seal_round_trips_with_a_fresh_nonce_each_time() -> None:
    kek = Kek.generate()
    a = kek.seal(b"secret", context="ca_keys/1/root")
    b = kek.seal(b"secret", context="ca_keys/1/root")
    assert a != b  # random 192-bit nonce per seal
    assert b"secret" not in a
    assert kek.unseal(a, context="ca_keys/1/root") == b"secret"


def test_wrong_kek_gives_a_clear_error_not_a_crash() -> None:
    blob = Kek.generate().seal(b"secret", context="c")
    with pytest.raises(SealError, match=WRONG_KEK):
        Kek.generate().unseal(blob, context="c")


def test_tampered_sealed_blob_is_refused() -> None:
    kek = Kek.generate()
    blob = bytearray(kek.seal(b"secret", context="c"))
    blob[-1] ^= 1
    with pytest.raises(SealError, match="tampered"):
        kek.unseal(bytes(blob), context="c")


def test_tampered_kek_id_in_the_header_is_refused() -> None:
    kek = Kek.generate()
    blob = bytearray(kek.seal(b"secret", context="c"))
    blob[5] ^= 1
    with pytest.raises(SealError):
        kek.unseal(bytes(blob), context="c")


def test_sealed_blob_swapped_between_rows_is_refused() -> None:
    kek = Kek.generate()
    blob = kek.seal(b"key of row A", context="garrison/ca_keys/aaaa/intermediate")
    with pytest.raises(SealError, match="moved from another record"):
        kek.unseal(blob, context="garrison/ca_keys/bbbb/intermediate")


@pytest.mark.parametrize("blob", [b"", b"gs1\x00short", b"xx" * 40], ids=["empty", "truncated", "bad-magic"])
def test_garbage_blob_is_a_seal_error(blob: bytes) -> None:
    with pytest.raises(SealError, match="format"):
        Kek.generate().unseal(blob, context="c")


def test_kek_repr_never_shows_the_key() -> None:
    kek = Kek(b"\x01" * 32)
    assert "\\x01" not in repr(kek) and repr(kek).startswith("Kek(id=")


def test_generate_kek_file_writes_0600_base64_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    kek = generate_kek_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_bytes().strip())) == 32
    assert Kek.from_file(path).key_id == kek.key_id
    assert [p.name for p in tmp_path.iterdir()] == ["kek"]  # no temp file left behind


def test_generate_kek_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    first = generate_kek_file(path)
    with pytest.raises(SealError, match="already exists"):
        generate_kek_file(path)
    assert Kek.from_file(path).key_id == first.key_id


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660])
def test_kek_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek"
    generate_kek_file(path)
    path.chmod(mode)
    with pytest.raises(SealError, match="0600 or stricter"):
        Kek.from_file(path)


def test_kek_file_0400_and_raw_bytes_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    path.write_bytes(b"\x07" * 32)
    path.chmod(0o400)
    assert Kek.from_file(path).key_id == Kek(b"\x07" * 32).key_id


@pytest.mark.parametrize("content", [b"c2hvcnQ=\n", b"not base64 !!", b"\x00" * 31])
def test_kek_file_with_a_wrong_length_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kek"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(SealError):
        Kek.from_file(path)


def test_missing_kek_file_is_a_seal_error(tmp_path: Path) -> None:
    with pytest.raises(SealError, match="cannot open"):
        Kek.from_file(tmp_path / "nope")


def test_kek_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    generate_kek_file(real)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(SealError):
        Kek.from_file(tmp_path / "link")


def test_kek_from_env() -> None:
    key = os.urandom(32)
    env = {"GARRISON_KEK": base64.b64encode(key).decode()}
    assert Kek.from_env("GARRISON_KEK", env).key_id == Kek(key).key_id
    with pytest.raises(SealError, match="not set"):
        Kek.from_env("GARRISON_KEK", {})


def test_kek_from_command_reads_base64_from_stdout() -> None:
    key = os.urandom(32)
    code = f"print({base64.b64encode(key).decode()!r})"
    assert Kek.from_command([sys.executable, "-c", code]).key_id == Kek(key).key_id


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([sys.executable, "-c", "import sys; sys.exit(3)"], "status 3"),
        ([sys.executable, "-c", "print('short')"], "KEK command"),
        (["/nonexistent/kms-helper"], "could not run"),
        ([], "empty"),
    ],
    ids=["non-zero-exit", "bad-output", "missing-binary", "empty-argv"],
)
def test_kek_command_failures_are_seal_errors(argv: list[str], match: str) -> None:
    with pytest.raises(SealError, match=match):
        Kek.from_command(argv)


def test_kek_command_timeout() -> None:
    with pytest.raises(SealError, match="timed out"):
        Kek.from_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.3)
