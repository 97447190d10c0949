"""SecLang transformations (``t:name``) as pure functions over latin-1 text (one char per byte).

Semantics follow libmodsecurity 3 (the baseline the CRS tests were run against). No I/O here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable

Transform = Callable[[str], str]

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ASCII_UPPER = {c + 32: c for c in range(ord("A"), ord("Z") + 1)}
_HEX = "0123456789abcdefABCDEF"


def lowercase(s: str) -> str:
    """ASCII letters only (C ``tolower``): ``bytes.lower`` does exactly that, in C, for latin-1 text."""
    if s.isascii():
        return s.lower()
    try:
        return s.encode("latin-1").lower().decode("latin-1")
    except UnicodeEncodeError:  # not latin-1 text: the per-char map
        return s.translate(_ASCII_LOWER)


def uppercase(s: str) -> str:
    if s.isascii():
        return s.upper()
    try:
        return s.encode("latin-1").upper().decode("latin-1")
    except UnicodeEncodeError:
        return s.translate(_ASCII_UPPER)


def _fullwidth(code: int) -> int:
    """%uFFxx with xx in 0x01..0x5E is full-width ASCII: map to the ASCII byte (as ModSecurity does)."""
    if (code & 0xFF00) == 0xFF00 and 0x01 <= (code & 0xFF) <= 0x5E:
        return (code & 0xFF) + 0x20
    return code & 0xFF


_PCT = re.compile(r"%([0-9a-fA-F]{2})")
_PCT_UNI = re.compile(r"%(?:[uU]([0-9a-fA-F]{4})|([0-9a-fA-F]{2}))")


def url_decode(s: str) -> str:
    if "%" not in s:
        return s.replace("+", " ") if "+" in s else s
    return _PCT.sub(lambda m: chr(int(m.group(1), 16)), s.replace("+", " "))


def url_decode_uni(s: str) -> str:
    if "%" not in s:
        return s.replace("+", " ") if "+" in s else s

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(_fullwidth(int(m.group(1), 16)))
        return chr(int(m.group(2), 16))

    return _PCT_UNI.sub(repl, s.replace("+", " "))


_ENTITY = re.compile(r"&(?:#[xX]([0-9a-fA-F]+);?|#([0-9]+);?|(quot|amp|lt|gt|nbsp);?)", re.IGNORECASE)
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "nbsp": "\xa0"}


def html_entity_decode(s: str) -> str:
    if "&" not in s:
        return s

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(int(m.group(1)[-8:], 16) & 0xFF)
        if m.group(2) is not None:
            return chr(int(m.group(2)[-9:]) & 0xFF)
        return _NAMED[m.group(3).lower()]

    return _ENTITY.sub(repl, s)


_JS = re.compile(r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))", re.DOTALL)
_JS_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def js_decode(s: str) -> str:
    if "\\" not in s:
        return s

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(_fullwidth(int(m.group(1), 16)))
        if m.group(2) is not None:
            return chr(int(m.group(2), 16))
        if m.group(3) is not None:
            return chr(int(m.group(3), 8) & 0xFF)
        c = m.group(4)
        return _JS_SIMPLE.get(c, c)

    return _JS.sub(repl, s)


_CSS = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(\n)|(.))", re.DOTALL)


def css_decode(s: str) -> str:
    if "\\" not in s:
        return s

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(_fullwidth(int(m.group(1), 16)) if len(m.group(1)) >= 3 else int(m.group(1), 16))
        if m.group(2) is not None:
            return ""
        return m.group(3)

    return _CSS.sub(repl, s)


_ESC_SEQ = re.compile(r"\\(?:x([0-9a-fA-F]{2})|([0-7]{1,3})|([abfnrtv\\?'\"]))")


def escape_seq_decode(s: str) -> str:
    if "\\" not in s:
        return s

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return chr(int(m.group(1), 16))
        if m.group(2) is not None:
            return chr(int(m.group(2), 8) & 0xFF)
        c = m.group(3)
        return _JS_SIMPLE.get(c, c)

    return _ESC_SEQ.sub(repl, s)


_CMD_DELETE = str.maketrans("", "", "\\\"'^")
_CMD_SPACE_BEFORE = re.compile(r" +(?=[/(])")
_CMD_TO_SPACE = re.compile(r"[ ,;\t\n\r\f\v]+")


def cmd_line(s: str) -> str:
    """ModSecurity cmdLine: drop \\ " ' ^, turn , ; and whitespace into one space, no space before / or (."""
    # Each step only when it can act (memchr-fast ``in`` tests): a lone space maps to itself.
    if "\\" in s or '"' in s or "'" in s or "^" in s:
        s = s.translate(_CMD_DELETE)
    if "  " in s or any(c in s for c in ",;\t\n\r\f\v"):
        s = _CMD_TO_SPACE.sub(" ", s)
    if " /" in s or " (" in s:
        s = _CMD_SPACE_BEFORE.sub("", s)
    return lowercase(s)


_WS = " \t\n\r\f\v\xa0"
_WS_RUN = re.compile(f"[{_WS}]+")
_WS_DELETE = str.maketrans("", "", _WS)


def compress_whitespace(s: str) -> str:
    return _WS_RUN.sub(" ", s)


def remove_whitespace(s: str) -> str:
    return s.translate(_WS_DELETE)


def remove_nulls(s: str) -> str:
    return s.replace("\x00", "")


def replace_nulls(s: str) -> str:
    return s.replace("\x00", " ")


def normalize_path(s: str) -> str:
    """Resolve ``.``/``..`` segments and collapse ``//`` (relative paths keep leading ``..``)."""
    if "/" not in s:  # one segment: only "." and ".." mean something
        return "" if s == "." else s
    absolute = s.startswith("/")
    trailing = s.endswith("/") or s.endswith("/.") or s.endswith("/..")
    out: list[str] = []
    for seg in s.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not absolute:
                out.append("..")
            continue
        out.append(seg)
    result = ("/" if absolute else "") + "/".join(out)
    if trailing and out:
        result += "/"
    return result


def normalize_path_win(s: str) -> str:
    return normalize_path(s.replace("\\", "/"))


_C_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)


def replace_comments(s: str) -> str:
    return _C_COMMENT.sub(" ", s) if "/*" in s else s


_ALL_COMMENTS = re.compile(r"/\*.*?(?:\*/|\Z)|<!--.*?(?:-->|\Z)|(?:--|#)[^\n]*", re.DOTALL)


def remove_comments(s: str) -> str:
    return _ALL_COMMENTS.sub("", s)


_COMMENT_CHARS = re.compile(r"/\*|\*/|<!--|-->|--|#")


def remove_comments_char(s: str) -> str:
    return _COMMENT_CHARS.sub("", s)


_B64_CHARS = re.compile(r"[^A-Za-z0-9+/]")


def base64_decode(s: str) -> str:
    data = _B64_CHARS.split(s, maxsplit=1)[0]  # decoding stops at the first non-alphabet char
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4)).decode("latin-1")
    except (binascii.Error, ValueError):
        return s


def base64_decode_ext(s: str) -> str:
    return base64_decode(_B64_CHARS.sub("", s))


def hex_decode(s: str) -> str:
    try:
        return bytes.fromhex(s[: len(s) - len(s) % 2]).decode("latin-1")
    except ValueError:
        return s


def hex_encode(s: str) -> str:
    return s.encode("latin-1").hex()


_SQL_HEX = re.compile(r"0x((?:[0-9a-fA-F]{2})+)")


def sql_hex_decode(s: str) -> str:
    return _SQL_HEX.sub(lambda m: bytes.fromhex(m.group(1)).decode("latin-1"), s) if "0x" in s else s


_UTF8_SEQ = re.compile(r"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def utf8_to_unicode(s: str) -> str:
    """Replace each valid multi-byte UTF-8 sequence by ``%uHHHH`` (as ModSecurity's utf8toUnicode)."""
    if s.isascii():
        return s

    def repl(m: re.Match[str]) -> str:
        try:
            cp = ord(m.group(0).encode("latin-1").decode("utf-8"))
        except UnicodeDecodeError:
            return m.group(0)
        return f"%u{cp:04x}"

    return _UTF8_SEQ.sub(repl, s)


def length(s: str) -> str:
    return str(len(s))


def sha1(s: str) -> str:
    return hashlib.sha1(s.encode("latin-1"), usedforsecurity=False).digest().decode("latin-1")


def md5(s: str) -> str:
    return hashlib.md5(s.encode("latin-1"), usedforsecurity=False).digest().decode("latin-1")


def _identity(s: str) -> str:
    return s


TRANSFORMS: dict[str, Transform] = {
    "lowercase": lowercase,
    "uppercase": uppercase,
    "urldecode": url_decode,
    "urldecodeuni": url_decode_uni,
    "htmlentitydecode": html_entity_decode,
    "jsdecode": js_decode,
    "cssdecode": css_decode,
    "escapeseqdecode": escape_seq_decode,
    "cmdline": cmd_line,
    "compresswhitespace": compress_whitespace,
    "removewhitespace": remove_whitespace,
    "removenulls": remove_nulls,
    "replacenulls": replace_nulls,
    "normalizepath": normalize_path,
    "normalisepath": normalize_path,
    "normalizepathwin": normalize_path_win,
    "normalisepathwin": normalize_path_win,
    "replacecomments": replace_comments,
    "removecomments": remove_comments,
    "removecommentschar": remove_comments_char,
    "base64decode": base64_decode,
    "base64decodeext": base64_decode_ext,
    "hexdecode": hex_decode,
    "hexencode": hex_encode,
    "sqlhexdecode": sql_hex_decode,
    "utf8tounicode": utf8_to_unicode,
    "length": length,
    "sha1": sha1,
    "md5": md5,
    "trim": lambda s: s.strip(_WS),
    "trimleft": lambda s: s.lstrip(_WS),
    "trimright": lambda s: s.rstrip(_WS),
    "urldecodestrict": url_decode,
}


def lookup(name: str) -> Transform | None:
    """The transformation called ``name`` (case-insensitive), or None when unsupported."""
    return TRANSFORMS.get(name.lower())


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HIGH = "".join(map(chr, range(0x80, 0x100)))
# A transformation returns its input unchanged when the input holds none of these characters (by
# reading of each function above; no entry: no such shortcut). Lets a chain skip values it cannot change.
IDENTITY_UNLESS: dict[str, str] = {
    "lowercase": _UPPER,
    "urldecode": "%+",
    "urldecodeuni": "%+",
    "htmlentitydecode": "&",
    "jsdecode": "\\",
    "cssdecode": "\\",
    "escapeseqdecode": "\\",
    "cmdline": _UPPER + "\\\"'^ ,;\t\n\r\f\v",
    "compresswhitespace": _WS,
    "removewhitespace": _WS,
    "removenulls": "\x00",
    "replacenulls": "\x00",
    "normalizepath": "/.",
    "normalisepath": "/.",
    "normalizepathwin": "/.\\",
    "normalisepathwin": "/.\\",
    "replacecomments": "/",
    "removecomments": "/<-#",
    "removecommentschar": "/*<-#",
    "sqlhexdecode": "x",
    "utf8tounicode": _HIGH,
}


def changers(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern finding a character the chain ``names`` could act on (None: any value may change)."""
    if any(n not in IDENTITY_UNLESS for n in names):
        return None
    chars = sorted(set("".join(IDENTITY_UNLESS[n] for n in names)))
    return re.compile("[" + "".join(re.escape(c) for c in chars) + "]")


__all__ = [
    "IDENTITY_UNLESS",
    "TRANSFORMS",
    "Transform",
    "changers",
    "lookup",
]
