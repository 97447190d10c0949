"""Private keys at rest: sealed with XChaCha20-Poly1305 (libsodium via PyNaCl) under a KEK.

The KEK comes from a 0600 file, an environment variable or a command (a KMS hook); it never touches
the database. Each seal draws a fresh 192-bit random nonce; the associated data binds the blob to
its record (``context``), so a blob copied into another row fails to open. No primitive is ours.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import nacl.bindings as sodium
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.utils

from garrison.identity.ca.errors import SealError

KEK_BYTES = 32
_MAGIC = b"gs1\x00"  # format version of a sealed blob
_KEK_ID_BYTES = 8
_NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
WRONG_KEK = "the key-encryption key does not open this store"


def _decode_key(raw: bytes, where: str) -> bytes:
    if len(raw) == KEK_BYTES:
        return raw
    text = raw.strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"{where}: not 32 raw bytes nor base64 of 32 bytes") from None
    if len(key) != KEK_BYTES:
        raise SealError(f"{where}: the key-encryption key must be 32 bytes, got {len(key)}")
    return key


class Kek:
    """A 32-byte key-encryption key. Its ``key_id`` (a BLAKE2b digest) names it without revealing it."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEK_BYTES:
            raise SealError("the key-encryption key must be exactly 32 bytes")
        self._key = key
        self.key_id: bytes = nacl.hash.blake2b(
            key, digest_size=_KEK_ID_BYTES, person=b"garrison-kek-id", encoder=nacl.encoding.RawEncoder
        )

    def __repr__(self) -> str:
        return f"Kek(id={self.key_id.hex()})"

    @classmethod
    def generate(cls) -> Kek:
        return cls(nacl.utils.random(KEK_BYTES))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Kek:
        """Read a KEK file; refuse it unless only its owner can read it (mode 0600 or stricter)."""
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as e:
            raise SealError(f"cannot open KEK file {p}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SealError(f"KEK file {p} is not a regular file")
            if st.st_mode & 0o077:
                raise SealError(
                    f"KEK file {p} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 or stricter"
                )
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        return cls(_decode_key(raw, f"KEK file {p}"))

    @classmethod
    def from_env(cls, name: str, environ: dict[str, str] | None = None) -> Kek:
        """A base64 KEK from the environment variable ``name``."""
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise SealError(f"environment variable {name} is not set")
        return cls(_decode_key(value.encode(), f"environment variable {name}"))

    @classmethod
    def from_command(cls, argv: Sequence[str], *, timeout: float = 10.0) -> Kek:
        """KMS hook: run ``argv`` (no shell), read a base64 KEK from its stdout."""
        if not argv:
            raise SealError("KEK command is empty")
        try:
            done = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise SealError(f"KEK command {argv[0]!r} timed out after {timeout:g}s") from None
        except OSError as e:
            raise SealError(f"KEK command {argv[0]!r} could not run: {e.strerror}") from None
        if done.returncode != 0:
            raise SealError(f"KEK command {argv[0]!r} exited with status {done.returncode}")
        return cls(_decode_key(done.stdout, f"output of KEK command {argv[0]!r}"))

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """``magic | kek_id | nonce | ciphertext+tag``; AAD = magic | kek_id | context."""
        nonce = nacl.utils.random(_NONCE_BYTES)
        head = _MAGIC + self.key_id
        ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
            plaintext, head + context.encode(), nonce, self._key
        )
        return head + nonce + ct

    def unseal(self, blob: bytes, *, context: str) -> bytes:
        """Open a blob sealed for ``context``; every failure is a ``SealError`` naming the cause."""
        head_len = len(_MAGIC) + _KEK_ID_BYTES
        if len(blob) < head_len + _NONCE_BYTES + 16 or not blob.startswith(_MAGIC):
            raise SealError(f"sealed blob for {context} is not in a known format")
        kek_id = blob[len(_MAGIC) : head_len]
        if kek_id != self.key_id:
            raise SealError(
                f"{WRONG_KEK} (data sealed under KEK {kek_id.hex()}, loaded KEK is {self.key_id.hex()})"
            )
        nonce = blob[head_len : head_len + _NONCE_BYTES]
        try:
            return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
                blob[head_len + _NONCE_BYTES :], blob[:head_len] + context.encode(), nonce, self._key
            )
        except nacl.exceptions.CryptoError:
            raise SealError(
                f"sealed blob for {context} failed authentication: tampered, or moved from another record"
            ) from None


def generate_kek_file(path: str | os.PathLike[str]) -> Kek:
    """Write a new random KEK (base64) to ``path`` with mode 0600, atomically; never overwrite one."""
    p = Path(path)
    kek = Kek.generate()
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{nacl.utils.random(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(kek._key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, p)  # fails if ``path`` exists: losing a KEK loses every key it sealed
    except FileExistsError:
        raise SealError(f"KEK file {p} already exists; refusing to overwrite it") from None
    finally:
        os.unlink(tmp)
    dir_fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return kek


__all__ = ["KEK_BYTES", "WRONG_KEK", "Kek", "generate_kek_file"]
