"""@detectSQLi / @detectXSS through the libinjection C library (``libinjection-python`` binding).

The binding takes str and encodes it as UTF-8, so bytes 0x80-0xFF reach libinjection as two bytes
(ModSecurity passes them raw); libinjection only tokenizes ASCII, so verdicts rarely differ.
The binding is translated here and nowhere else; callers see ``available()`` and two match functions.
"""

from __future__ import annotations

try:
    import libinjection as _li  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the optional binding
    _li = None


def available() -> bool:
    return _li is not None


def detect_sqli(value: str) -> tuple[str, ...] | None:
    """libinjection's SQLi verdict; the capture (TX.0) is the fingerprint, as ModSecurity sets it."""
    if not value or _li is None:
        return None
    res = _li.is_sql_injection(value)
    return (str(res["fingerprint"]),) if res["is_sqli"] else None


def detect_xss(value: str) -> tuple[str, ...] | None:
    if not value or _li is None:
        return None
    res = _li.is_xss(value)
    return (value,) if res["is_xss"] else None


__all__ = ["available", "detect_sqli", "detect_xss"]
