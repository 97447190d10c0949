"""Error pages that leak stack traces, SQL errors or debug pages are detected; clean errors are not."""

from __future__ import annotations

import pytest

from garrison.dlp import LeakDetector

D = LeakDetector()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        pytest.param(
            b'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\nKeyError',
            "python_traceback",
            id="python traceback",
        ),
        pytest.param(
            b"java.lang.NullPointerException\n\tat com.acme.Foo.bar(Foo.java:42)", "java_stack", id="java"
        ),
        pytest.param(
            b"System.NullReferenceException: x\n   at Acme.Web.Home.Index() in C:\\src\\Home.cs:line 12",
            "dotnet_stack",
            id="dotnet",
        ),
        pytest.param(
            b"TypeError: x is undefined\n    at handler (/srv/app/index.js:10:5)", "node_stack", id="node"
        ),
        pytest.param(
            b"<b>Fatal error</b>: Uncaught Error in /var/www/a.php on line <b>3</b>", "php_error", id="php"
        ),
        pytest.param(
            b"panic: runtime error: index out of range\n\ngoroutine 1 [running]:\nmain.main()",
            "go_panic",
            id="go panic",
        ),
        pytest.param(b"You have an error in your SQL syntax; check the manual", "sql_mysql", id="mysql"),
        pytest.param(b'ERROR:  syntax error at or near "FROM"', "sql_postgresql", id="postgresql"),
        pytest.param(b'sqlite3.OperationalError: near "SELEC": syntax error', "sql_sqlite", id="sqlite"),
        pytest.param(b"ORA-00933: SQL command not properly ended", "sql_oracle", id="oracle"),
        pytest.param(b"Unclosed quotation mark after the character string ''.", "sql_mssql", id="mssql"),
        pytest.param(b"<h1>Whitelabel Error Page</h1>", "debug_page", id="spring whitelabel"),
        pytest.param(
            b"You're seeing this error because you have <code>DEBUG = True</code>",
            "debug_page",
            id="django debug",
        ),
    ],
)
def test_leaks_found(body: bytes, kind: str) -> None:
    assert D.find(body) == kind


@pytest.mark.parametrize(
    "body",
    [
        b'{"error":"not found","request_id":"abc"}',
        b'{"error":"validation failed","fields":{"email":"must be a valid email"}}',
        b"<html><body><h1>500 Internal Server Error</h1>Please try again.</body></html>",
        b'{"message":"order ORA-123 not found"}',
    ],
)
def test_clean_errors_not_flagged(body: bytes) -> None:
    assert D.find(body) is None


def test_scan_is_bounded() -> None:
    assert LeakDetector(scan_bytes=1024).find(b" " * 2048 + b"ORA-00933") is None
