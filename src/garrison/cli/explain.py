"""`garrison policy explain FILE --method GET --path /x [--token T]`: the decision, the rule, and why.

Uses the same loading, normalization, routing, token verification and policy index as the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from garrison.config.loader import load_config
from garrison.errors import HttpError
from garrison.http.paths import normalize_path, split_target
from garrison.identity.authenticator import UNCHECKED_REVOCATIONS, JwtAuthenticator
from garrison.pipeline.context import RequestContext
from garrison.pipeline.route import Route
from garrison.pipeline.stages.authz import Authz
from garrison.pipeline.verdicts import Deny
from garrison.policy.explain import explain, format_explanation
from garrison.policy.index import PolicyIndex
from garrison.proxy.build import build_runtimes
from garrison.proxy.upstream import Pools


def explain_command(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    runtimes = build_runtimes(
        cfg, pools=Pools(), observe=lambda *a: None, authenticators=(), base_dir=Path(args.file).parent
    )
    rt = next(iter(runtimes.values()))
    try:
        raw_path, _ = split_target(args.path.encode())
        path = normalize_path(raw_path)
    except HttpError as exc:
        print(
            f"request: {args.method} {args.path}\ndecision: DENY {exc.reason.status} {exc.reason} (hygiene)"
        )
        return 1
    found = rt.router.match(args.host.lower(), path, args.method.upper())
    if not isinstance(found, Route):
        print(f"request: {args.method} {path}\ndecision: DENY {found.status} {found} (router)")
        return 1
    headers = [(b"authorization", b"Bearer " + args.token.encode())] if args.token else []
    ctx = RequestContext(
        method=args.method.upper(),
        raw_target=path.encode(),
        headers=headers,
        client_addr=args.client_ip,
        request_id="explain",
        now=time.time(),
    )
    ctx.path, ctx.route = path, found

    async def authenticate() -> Deny | None:
        # Offline: revocations are not pulled here (the explanation says nothing about them).
        authn = JwtAuthenticator.build(
            cfg.issuers,
            cfg.trust_domain,
            base_dir=Path(args.file).parent,
            revocations=UNCHECKED_REVOCATIONS,
        )
        await authn.start()
        try:
            v = await authn.authenticate(ctx, found.issuers)
        finally:
            await authn.close()
        return v if isinstance(v, Deny) else None

    if args.token and not found.public:
        denied = asyncio.run(authenticate())
        if denied is not None:
            print(f"request: {ctx.method} {path} on route {found.name}")
            print(
                f"decision: DENY {denied.status} {denied.reason} (authn: {denied.detail or 'token rejected'})"
            )
            return 1
    elif not found.public:
        print(f"request: {ctx.method} {path} on route {found.name} from anonymous")
        print("decision: DENY 401 authn_required (authn: the route is not public and no token was given)")
        return 1
    ex = explain(
        _policy(found),
        route=found.name,
        public=found.public,
        method=ctx.method,
        path=path,
        identity=ctx.identity,
        client_ip=args.client_ip,
    )
    print(format_explanation(ex))
    return 0 if ex.decision.allowed else 1


def _policy(route: Route) -> PolicyIndex:
    assert route.chain is not None
    for stage in route.chain.stages:
        if isinstance(stage, Authz):
            return stage.index
    raise RuntimeError("route has no authz stage")
