"""Leak detection for error pages: stack traces, SQL errors, framework debug pages. No I/O.

One alternation compiled at load, searched over the first ``scan_bytes`` of an error response.
Each signature is specific enough not to fire on a clean JSON error (``{"error": "not found"}``).
"""

from __future__ import annotations

import re
from typing import Final

SIGNATURES: Final[dict[str, tuple[str, ...]]] = {
    "python_traceback": (
        r"Traceback \(most recent call last\):",
        r'File "[^"\n]{1,300}", line \d+, in ',
    ),
    "java_stack": (
        r"\bat [\w$]+(?:\.[\w$<>]+)+\([\w$]+\.(?:java|kt|scala|groovy):\d+\)",
        r"\bat [\w$]+(?:\.[\w$<>]+)+\((?:Native Method|Unknown Source)\)",
        r'Exception in thread "[^"\n]{0,100}" [\w$.]+(?:Exception|Error)',
        r"\bCaused by: [\w$]+(?:\.[\w$]+)+(?:Exception|Error)",
    ),
    "dotnet_stack": (
        r"\bat [\w.`<>]+\([^()\n]{0,300}\) in [^\n]{1,300}:line \d+",
        r"\bSystem\.(?:[A-Z]\w+\.)*[A-Z]\w*Exception\b",
        r"Server Error in '[^'\n]{0,200}' Application",
        r"--- End of stack trace from previous location",
    ),
    "node_stack": (
        r"\n\s+at (?:[\w$.<>\[\] ]+ )?\(?(?:/|[A-Za-z]:\\|node:|file://)[^()\n]{0,300}\.[cm]?[jt]s:\d+:\d+\)?",
        r"\bat (?:Object\.<anonymous>|Module\._compile|process\.processTicksAndRejections)\b",
    ),
    "php_error": (
        r"<b>(?:Fatal error|Parse error|Warning|Notice|Deprecated)</b>:",
        r"\bPHP (?:Fatal error|Parse error|Warning|Notice):",
        r"Stack trace:\s*#0 ",
        r" on line <b>\d+</b>",
        r"Uncaught (?:[A-Z]\w*\\)*[A-Z]\w*(?:Exception|Error)\b",
    ),
    "go_panic": (
        r"\bgoroutine \d+ \[[a-z ]+\]:",
        r"\bpanic: [^\n]{0,300}\n\s*\n?goroutine ",
        r"runtime\.gopanic\b",
    ),
    "sql_mysql": (
        r"You have an error in your SQL syntax",
        r"\bmysqli?_(?:fetch|query|num_rows|connect)\w*\(",
        r"\bMySQLSyntaxErrorException\b",
        r"\bcom\.mysql\.jdbc\.",
        r"check the manual that corresponds to your (?:MySQL|MariaDB) server version",
    ),
    "sql_postgresql": (
        r"\bPG::[A-Z]\w+",
        r"\bpsycopg2?\.(?:errors\.)?\w+Error\b",
        r"\borg\.postgresql\.util\.PSQLException\b",
        r"\bERROR:\s+syntax error at or near",
        r"\bERROR:\s+(?:relation|column) \"[^\"\n]{0,100}\" does not exist",
        r"unterminated quoted string at or near",
    ),
    "sql_sqlite": (
        r"\bsqlite3\.(?:Operational|Integrity|Programming)Error\b",
        r"\bSQLITE_(?:ERROR|CONSTRAINT|MISUSE)\b",
        r"\bSQLite(?:3)?::\w+Exception\b",
        r'\bnear "[^"\n]{0,100}": syntax error',
    ),
    "sql_oracle": (
        r"\bORA-\d{5}\b",
        r"\bPLS-\d{5}\b",
        r"\boracle\.jdbc\.",
    ),
    "sql_mssql": (
        r"Unclosed quotation mark after the character string",
        r"\bMicrosoft OLE DB Provider for (?:SQL Server|ODBC Drivers)",
        r"\[Microsoft\]\[ODBC[^\]\n]{0,60}\]",
        r"\bSystem\.Data\.SqlClient\.SqlException\b",
        r"\bMicrosoft\.Data\.SqlClient\.SqlException\b",
        r"\bIncorrect syntax near\b",
    ),
    "sql_generic": (
        r"\bSQLSTATE\[\w+\]",
        r"\bjava\.sql\.SQL\w*Exception\b",
        r"\bsqlalchemy\.exc\.\w+Error\b",
    ),
    "debug_page": (
        r"You're seeing this error because you have <code>DEBUG = True</code>",
        r"\bWerkzeug Debugger\b",
        r"The debugger caught an exception in your WSGI application",
        r"Whitelabel Error Page",
        r"Action Controller: Exception caught",
        r"\bWhoops! There was an error\.",
        r"\bIlluminate\\(?:Database|Foundation|Routing)\\",
        r"<title>[^<\n]{0,200}\(\d{3} Internal Server Error\)</title>",
        r"\bLaravel\b[^\n]{0,100}\bStack trace\b",
    ),
}


class LeakDetector:
    """``find(body)``: the kind of leak found (``sql_mysql``, ``java_stack``, ...) or None.

    Each signature is its own compiled pattern: one that starts with a literal gets the regex engine's
    literal-prefix search (a leading ``\\b`` or one big alternation would defeat it, ~30x slower).
    """

    __slots__ = ("_rxs", "scan_bytes")

    def __init__(self, scan_bytes: int = 65_536, signatures: dict[str, tuple[str, ...]] = SIGNATURES) -> None:
        self.scan_bytes = scan_bytes
        self._rxs = tuple(
            (kind, re.compile(p.removeprefix(r"\b").encode())) for kind, ps in signatures.items() for p in ps
        )

    def find(self, body: bytes) -> str | None:
        end = self.scan_bytes
        for kind, rx in self._rxs:
            if rx.search(body, 0, end) is not None:
                return kind
        return None

    def __repr__(self) -> str:
        return f"<LeakDetector signatures={len(self._rxs)} scan={self.scan_bytes}>"


__all__ = ["SIGNATURES", "LeakDetector"]
