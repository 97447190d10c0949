"""``garrison up``: the control plane and the gateway as two supervised child processes.

The gateway starts only once the control plane answers ``GET /healthz`` over TLS verified with
``control_plane.ca_file`` (it pulls keys and the trust bundle from there). SIGTERM/SIGINT stop the
gateway, then the control plane; SIGHUP is forwarded to the gateway (reload). If either child
exits on its own, the other is stopped and ``up`` exits non-zero naming the one that died.
Children run in their own process group (a terminal's Ctrl-C reaches only ``up``, which forwards
it in order) and, on Linux, get SIGTERM if ``up`` itself is killed.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import cast

from garrison.cli.api import DEFAULT_CONFIG, CliError, Target, load_target, tls_context

POLL = 0.1
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_TIMEOUT = 15.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run the control plane and the gateway (foreground)")
    p.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"path to garrison.yaml (default ./{DEFAULT_CONFIG})"
    )
    p.add_argument(
        "--wait-seconds", type=float, default=30.0, help="how long to wait for the control plane to be ready"
    )
    p.set_defaults(func=up_command)


def _say(msg: str) -> None:
    print(f"garrison up: {msg}", file=sys.stderr, flush=True)


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl on Linux, loaded in the parent (nothing is imported between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return cast("Callable[..., int]", ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


def _child_setup(parent: int, prctl: Callable[..., int] | None) -> None:  # pragma: no cover - in the child
    # A SIGHUP forwarded before the child installs its handler must not kill it (default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # SIGTERM to the child if `up` dies
    if os.getppid() != parent:  # `up` died before prctl took effect
        os._exit(1)


class Supervisor:
    """Starts, watches and stops the two children. Signals only set flags; the loop acts on them."""

    def __init__(self, config: Path, target: Target, wait_seconds: float, *, verbose: bool = False) -> None:
        self.config = config
        self.verbose = verbose
        self.target = target
        self.wait_seconds = wait_seconds
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._pending: list[int] = []

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def _spawn(self, name: str, command: str) -> subprocess.Popen[bytes]:
        parent, prctl = os.getpid(), _load_prctl()
        flags = ["-v"] if self.verbose else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "garrison.cli.main", *flags, command, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=lambda: _child_setup(parent, prctl),
        )
        self.children[name] = proc
        _say(f"started the {name} (pid {proc.pid})")
        return proc

    def _stopping(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in self._pending)

    def _wait_ready(self, cp: subprocess.Popen[bytes]) -> bool:
        """True once /healthz answers; False if a stop signal came first. Raises if it cannot start."""
        import httpx

        url = f"{self.target.base_url}/healthz"
        ctx = tls_context(self.target.ca_file)
        deadline = time.monotonic() + self.wait_seconds
        last = "no answer yet"
        with httpx.Client(verify=ctx, timeout=2.0, trust_env=False) as client:
            while True:
                if self._stopping():
                    return False
                code = cp.poll()
                if code is not None:
                    raise CliError(
                        f"the control plane exited with status {code} before it was ready"
                        " (its error is above); the gateway was not started"
                    )
                try:
                    r = client.get(url)
                    if r.status_code == 200:
                        return True
                    last = f"HTTP {r.status_code}"
                except httpx.TransportError as e:
                    last = type(e).__name__
                if time.monotonic() >= deadline:
                    raise CliError(
                        f"the control plane did not answer {url} within {self.wait_seconds:g} s"
                        f" (last: {last}); the gateway was not started"
                    )
                time.sleep(POLL * 2)

    def stop(self) -> dict[str, int]:
        """Gateway first (it depends on the control plane), then the control plane. Exit codes."""
        codes: dict[str, int] = {}
        for name in ("gateway", "control plane"):
            proc = self.children.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    _say(f"the {name} did not stop within {STOP_TIMEOUT:g} s; killing it")
                    proc.kill()
                    proc.wait()
            codes[name] = proc.returncode
        return codes

    def run(self) -> int:
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {s: signal.signal(s, self._on_signal) for s in handled}
        try:
            return self._run()
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)

    def _run(self) -> int:
        cp = self._spawn("control plane", "control-plane")
        if not self._wait_ready(cp):
            return self._shutdown()
        _say(f"control plane ready at {self.target.base_url}")
        self._spawn("gateway", "gateway")
        while True:
            while self._pending:
                signum = self._pending.pop(0)
                if signum == signal.SIGHUP:
                    gw = self.children["gateway"]
                    if gw.poll() is None:
                        gw.send_signal(signal.SIGHUP)
                        _say("SIGHUP: gateway reloading its configuration")
                else:
                    return self._shutdown()
            for name, proc in self.children.items():
                code = proc.poll()
                if code is not None:
                    other = "control plane" if name == "gateway" else "gateway"
                    _say(f"the {name} exited unexpectedly with status {code}; stopping the {other}")
                    self.stop()
                    raise CliError(f"the {name} died (exit status {code})")
            time.sleep(POLL)

    def _shutdown(self) -> int:
        _say("stopping")
        codes = self.stop()
        # -SIGTERM: a child still starting up had no handler yet and took the default action.
        bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGTERM)}
        if bad:
            raise CliError(
                "unclean shutdown: " + ", ".join(f"the {n} exited with status {c}" for n, c in bad.items())
            )
        _say("stopped")
        return 0


def up_command(args: argparse.Namespace) -> int:
    config = Path(args.config)
    target = load_target(config)
    if not target.ca_file.exists():
        raise CliError(f"the control plane's CA file {target.ca_file} does not exist (run `garrison init`)")
    if args.wait_seconds <= 0:
        raise CliError("--wait-seconds must be positive")
    verbose = bool(getattr(args, "verbose", False))  # `garrison -v up`: the children log debug too
    return Supervisor(config.resolve(), target, args.wait_seconds, verbose=verbose).run()


__all__ = ["Supervisor", "add_parser", "up_command"]
