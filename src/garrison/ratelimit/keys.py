"""Bucket keys from a request: the `key:` parts of a rate-limit rule, compiled once into one function."""

from __future__ import annotations

from collections.abc import Callable

from garrison.pipeline.context import RequestContext

KeyPart = str | int | float | bool
KeyFn = Callable[[RequestContext], tuple[KeyPart, ...] | None]
_Getter = Callable[[RequestContext], KeyPart | None]


def _client_ip(ctx: RequestContext) -> KeyPart | None:
    return ctx.client_ip


def _subject(ctx: RequestContext) -> KeyPart | None:
    return ctx.identity.principal if ctx.identity is not None else None


def _route(ctx: RequestContext) -> KeyPart | None:
    return ctx.route.name if ctx.route is not None else None


def _claim(name: str) -> _Getter:
    def get(ctx: RequestContext) -> KeyPart | None:
        if ctx.identity is None:
            return None
        v = ctx.identity.claims.get(name)
        return v if isinstance(v, str | int | float) else None  # lists/objects make no key

    return get


def _getter(part: str) -> _Getter:
    if part == "client_ip":
        return _client_ip
    if part == "subject":
        return _subject
    if part == "route":
        return _route
    if part.startswith("claim:") and len(part) > len("claim:"):
        return _claim(part[len("claim:") :])
    raise ValueError(f"unknown rate-limit key part {part!r}")


def build_key_fn(parts: list[str]) -> KeyFn:
    """A function from request to bucket key, a tuple with one value per part.

    It returns None when a part has no value (``subject`` for an anonymous request, a missing
    ``claim:<name>``, no route yet): the caller then decides, e.g. keys on ``client_ip`` instead.
    """
    if not parts:
        raise ValueError("a rate-limit key needs at least one part")
    getters = tuple(_getter(p) for p in parts)
    if len(getters) == 1:
        (only,) = getters

        def one(ctx: RequestContext) -> tuple[KeyPart, ...] | None:
            v = only(ctx)
            return None if v is None else (v,)

        return one

    def many(ctx: RequestContext) -> tuple[KeyPart, ...] | None:
        values: list[KeyPart] = []
        for g in getters:
            v = g(ctx)
            if v is None:
                return None
            values.append(v)
        return tuple(values)

    return many


__all__ = ["KeyFn", "KeyPart", "build_key_fn"]
