"""Entry point of the `garrison` command. Errors print one clear message and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from garrison import __version__
from garrison.errors import GarrisonError


def _gateway(args: argparse.Namespace) -> int:
    from garrison.cli.run import run_async
    from garrison.proxy.gateway import serve

    return run_async(serve(args.config, watch=not args.no_watch))


def _config_check(args: argparse.Namespace) -> int:
    from garrison.config.loader import load_config
    from garrison.proxy.build import build_runtimes
    from garrison.proxy.upstream import Pools

    cfg = load_config(args.file)
    # Compile too: overlapping routes and unresolvable policies are load errors, not request-time ones.
    build_runtimes(
        cfg, pools=Pools(), observe=lambda *a: None, authenticators=(), base_dir=Path(args.file).parent
    )
    warnings = [
        f"issuer {i.name!r}: insecure_allow_http_jwks is on"
        for i in cfg.issuers
        if i.insecure_allow_http_jwks
    ]
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"{args.file}: ok ({len(cfg.routes)} routes, {len(cfg.policies)} policies,"
        f" {len(cfg.issuers)} issuers)"
    )
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    import json

    from garrison.config.loader import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from garrison.config.reference import render_reference

    print(render_reference())
    return 0


def _policy_explain(args: argparse.Namespace) -> int:
    from garrison.cli.explain import explain_command

    return explain_command(args)


def _demo(args: argparse.Namespace) -> int:
    from garrison.cli.run import run_async
    from garrison.demo.tour import run_demo

    return run_async(run_demo(serve=args.serve))


def _control_plane(args: argparse.Namespace) -> int:
    from garrison.cli.run import run_async
    from garrison.control.server import serve

    return run_async(serve(Path(args.config)))


# Command groups in their own modules, each with ``add_parser(subparsers)``. Optional ones (built
# separately) are skipped while absent, so this file works whether or not they exist yet.
_COMMAND_MODULES = ("init", "up", "joins", "certs", "clients", "tokens")
_OPTIONAL_COMMAND_MODULES = ("kek", "audit", "ca")


def _add_command_modules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"garrison.cli.{name}").add_parser(sub)
    for name in _OPTIONAL_COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"garrison.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"garrison.cli.{name}":
                raise  # the module exists but is broken: say so rather than hide the command
            continue
        mod.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="garrison", description="Zero-trust security layer for microservices.")
    p.add_argument("--version", action="version", version=f"garrison {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("gateway", help="run the edge gateway in the foreground")
    g.add_argument("-c", "--config", required=True, help="path to garrison.yaml")
    g.add_argument("--no-watch", action="store_true", help="reload only on SIGHUP, not on file change")
    g.set_defaults(func=_gateway)

    c = sub.add_parser("config", help="check garrison.yaml or print its JSON Schema")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    cc = csub.add_parser("check", help="validate and compile a config file")
    cc.add_argument("file")
    cc.set_defaults(func=_config_check)
    cs = csub.add_parser("schema", help="print the JSON Schema of garrison.yaml")
    cs.set_defaults(func=_config_schema)
    cr = csub.add_parser("reference", help="print the configuration reference (Markdown)")
    cr.set_defaults(func=_config_reference)

    pol = sub.add_parser("policy", help="inspect authorization policy")
    psub = pol.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    pe = psub.add_parser("explain", help="show the decision for a request and the rule that made it")
    pe.add_argument("file", help="path to garrison.yaml")
    pe.add_argument("--method", default="GET")
    pe.add_argument("--path", required=True)
    pe.add_argument("--host", default="localhost")
    pe.add_argument("--token", help="a bearer token (verified with the config's static keys or JWKS)")
    pe.add_argument("--client-ip", default="127.0.0.1")
    pe.set_defaults(func=_policy_explain)

    d = sub.add_parser(
        "demo", help="run a scripted tour on free loopback ports; exits 0 if every step matched"
    )
    d.add_argument("--serve", action="store_true", help="keep running after the tour (Ctrl-C to stop)")
    d.set_defaults(func=_demo)

    cp = sub.add_parser("control-plane", help="run the control-plane API (CA, tokens) in the foreground")
    cp.add_argument("-c", "--config", default="garrison.yaml", help="path to garrison.yaml")
    cp.set_defaults(func=_control_plane)
    _add_command_modules(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per JWKS fetch is noise
    try:
        return int(args.func(args))
    except GarrisonError as exc:
        print(f"garrison: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
