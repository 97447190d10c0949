"""setup.py's compiled set (D25) stays in step with the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compiled() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError("no COMPILED list in setup.py")


def test_every_compiled_module_exists_and_is_on_the_request_path() -> None:
    paths = compiled()
    assert paths == sorted(paths) and len(set(paths)) == len(paths)
    for rel in paths:
        assert (ROOT / "src" / rel).is_file(), rel
    assert "garrison/proxy/server.py" in paths and "garrison/pipeline/chain.py" in paths


def test_modules_whose_tests_monkeypatch_constants_stay_interpreted() -> None:
    """A compiled module's constants are inlined: monkeypatching them would silently do nothing."""
    patched = set()
    for test in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(test.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "setattr"
                and getattr(getattr(node.func, "value", None), "id", "") == "monkeypatch"
                and node.args
                and isinstance(node.args[0], ast.Name)
            ):
                patched.add(node.args[0].id)
    # module aliases used with monkeypatch.setattr in tests, mapped to their files
    aliases = {"metrics_mod": "garrison/telemetry/metrics.py", "protocol": "garrison/control/protocol.py",
               "sql_state": "garrison/identity/oauth/sql_state.py"}  # fmt: skip
    for alias in patched & set(aliases):
        assert aliases[alias] not in compiled(), f"tests monkeypatch {aliases[alias]}: keep it interpreted"
