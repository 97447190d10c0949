"""Build hook: compile the data plane's hot modules with mypyc when a C compiler is there.

Everything else about the package is in pyproject.toml. The modules in ``COMPILED`` are plain,
strictly typed Python; mypyc (the mypy project's compiler) turns them into C extensions, which
measured 100-110 -> 71-92 µs of gateway CPU per request (docs/decisions.md D25). The ``.py`` files ship
too, so a build that cannot compile installs a pure-Python garrison that behaves the same.

``GARRISON_COMPILE``: ``auto`` (default: compile; on any failure warn and build pure Python),
``1`` (compile or fail the build: CI), ``0`` (never). Editable installs (``pip install -e``) are
never compiled: a compiled module would shadow the source being edited.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED = [
    "garrison/http/framing.py",
    "garrison/http/headers.py",
    "garrison/http/paths.py",
    "garrison/identity/tokens.py",
    "garrison/pipeline/chain.py",
    "garrison/pipeline/context.py",
    "garrison/pipeline/route.py",
    "garrison/pipeline/router.py",
    "garrison/pipeline/stage.py",
    "garrison/pipeline/stages/authn.py",
    "garrison/pipeline/stages/authz.py",
    "garrison/pipeline/stages/forward.py",
    "garrison/pipeline/stages/hygiene.py",
    "garrison/pipeline/stages/ratelimit.py",
    "garrison/pipeline/stages/response.py",
    "garrison/pipeline/stages/routing.py",
    "garrison/pipeline/verdicts.py",
    "garrison/policy/index.py",
    "garrison/proxy/body.py",
    "garrison/proxy/build.py",
    "garrison/proxy/forward.py",
    "garrison/proxy/responses.py",
    "garrison/proxy/server.py",
    "garrison/proxy/upstream.py",
    "garrison/ratelimit/bucket.py",
    "garrison/ratelimit/keys.py",
]
# The build environment has no third-party packages (build isolation): their types are Any here,
# which mypyc compiles as dynamic operations. Strict type checking is mypy's job in CI, not this.
MYPY_FLAGS = ["--ignore-missing-imports", "--follow-imports=silent", "--python-version=3.11"]


def _mode() -> str:
    mode = os.environ.get("GARRISON_COMPILE", "auto").strip().lower() or "auto"
    if mode not in {"auto", "0", "1"}:
        sys.exit(f"GARRISON_COMPILE must be auto, 1 or 0, not {mode!r}")
    # Metadata steps (egg_info, dist_info) finalize build_ext too: translating there would triple
    # the build time. Editable installs (editable_wheel, develop) are never compiled.
    if not {"bdist_wheel", "build", "build_ext", "install", "bdist"} & set(sys.argv[1:]):
        return "0"
    return mode


def _warn(what: str, exc: BaseException) -> None:
    print(f"garrison: {what} ({type(exc).__name__}: {exc}); building pure Python", file=sys.stderr)


def mypyc_extensions(mode: str) -> list[Any]:
    """The compiled modules' extensions (mypyc translates them to C here), or [] to stay pure."""
    if mode == "0":
        return []
    src = Path(__file__).resolve().parent / "src"
    try:
        from mypyc.build import mypycify

        # Not pyproject's [tool.mypy]: its pydantic plugin is not in the build environment.
        config = src.parent / "build" / "mypyc.ini"
        config.parent.mkdir(exist_ok=True)
        config.write_text("[mypy]\n")
        target = src.parent / "build" / "mypyc"
        cwd = os.getcwd()
        os.chdir(src)  # mypyc names the modules after their paths
        try:
            flags = [f"--config-file={config}", *MYPY_FLAGS]
            return list(mypycify([*flags, *COMPILED], opt_level="3", target_dir=str(target)))
        finally:
            os.chdir(cwd)
    except (Exception, SystemExit) as exc:
        if mode == "1":
            raise
        _warn("mypyc could not translate the hot modules", exc)
        return []


class OptionalBuildExt(build_ext):
    """Translates and compiles only when extensions are really built (not for metadata), and all or
    none: a failure leaves no half-built set of modules behind."""

    def finalize_options(self) -> None:
        self.distribution.ext_modules = mypyc_extensions(_mode())  # before setuptools prepares them
        super().finalize_options()

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as exc:
            if _mode() == "1":
                raise
            _warn("the C compiler failed", exc)
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []


# A stand-in so that setuptools runs build_ext and tags the wheel for this platform; build_ext
# replaces it with mypyc's extensions (or none) and never compiles it.
setup(
    ext_modules=[Extension("garrison._compiled", sources=["src/garrison/__init__.py"])],
    cmdclass={"build_ext": OptionalBuildExt},
)
