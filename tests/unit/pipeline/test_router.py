"""The route index: matching, overlap refusal, case ambiguity, scale, and equality with a naive scan."""

from __future__ import annotations

import dataclasses
import time
import timeit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from garrison.errors import ConfigError
from garrison.pipeline.route import Route, Upstream
from garrison.pipeline.router import Router
from garrison.reasons import Reason

UP = Upstream("http", "127.0.0.1", 9000)
ALL = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


def route(name: str, path: str, methods: str | frozenset[str] = ALL, host: str | None = None) -> Route:
    """``path`` as in garrison.yaml: exact, or a prefix ending in "/**"."""
    prefix = path.endswith("/**")
    pattern = path[:-3] if prefix else path
    ms = frozenset(methods.split()) if isinstance(methods, str) else methods
    return Route(name=name, pattern=pattern, prefix=prefix, methods=ms, host=host, upstream=UP)


API = route("api", "/api/**")
ITEMS_GET = route("items-get", "/items", "GET HEAD")
ITEMS_POST = route("items-post", "/items", "POST")
ADMIN_HOST = route("admin", "/admin/**", "GET", host="admin.example.com")
HEALTH = route("health", "/healthz", "GET")
ROUTER = Router([API, ITEMS_GET, ITEMS_POST, ADMIN_HOST, HEALTH])


@pytest.mark.parametrize(
    ("host", "path", "method", "expected"),
    [
        pytest.param("a.com", "/api", "GET", API, id="prefix-matches-its-own-path"),
        pytest.param("a.com", "/api/", "GET", API, id="prefix-matches-trailing-slash"),
        pytest.param("a.com", "/api/v1/items", "DELETE", API, id="prefix-matches-below"),
        pytest.param("a.com", "/apix", "GET", Reason.NO_ROUTE, id="prefix-is-segment-aligned"),
        pytest.param("a.com", "/ap", "GET", Reason.NO_ROUTE, id="shorter-than-prefix"),
        pytest.param("a.com", "/items", "GET", ITEMS_GET, id="exact-by-method-get"),
        pytest.param("a.com", "/items", "HEAD", ITEMS_GET, id="head-when-listed"),
        pytest.param("a.com", "/items", "POST", ITEMS_POST, id="exact-by-method-post"),
        pytest.param("a.com", "/items", "DELETE", Reason.METHOD_NOT_ALLOWED, id="path-matches-method-not"),
        pytest.param("a.com", "/items/1", "GET", Reason.NO_ROUTE, id="exact-does-not-match-below"),
        pytest.param("a.com", "/items/", "GET", Reason.NO_ROUTE, id="exact-does-not-match-trailing-slash"),
        pytest.param("a.com", "/healthz", "HEAD", Reason.METHOD_NOT_ALLOWED, id="head-not-implied-by-get"),
        pytest.param("admin.example.com", "/admin/x", "GET", ADMIN_HOST, id="host-route-on-its-host"),
        pytest.param("admin.example.com", "/healthz", "GET", HEALTH, id="any-host-route-on-named-host"),
        pytest.param(
            "admin.example.com", "/admin", "POST", Reason.METHOD_NOT_ALLOWED, id="host-route-method"
        ),
        pytest.param("other.com", "/admin/x", "GET", Reason.NO_ROUTE, id="host-route-only-on-its-host"),
        pytest.param("a.com", "/API/v1", "GET", Reason.PATH_CASE_AMBIGUOUS, id="case-folded-prefix-match"),
        pytest.param("a.com", "/Items", "POST", Reason.PATH_CASE_AMBIGUOUS, id="case-folded-exact-match"),
        pytest.param("a.com", "/Items", "DELETE", Reason.NO_ROUTE, id="case-folded-path-method-mismatch"),
    ],
)
def test_match(host: str, path: str, method: str, expected: Route | Reason) -> None:
    assert ROUTER.match(host, path, method) == expected


def test_catch_all_route_matches_every_path() -> None:
    router = Router([route("all", "/**", "GET")])
    for path in ("/", "/a", "/a/b/c/", "/ADMIN"):
        assert router.match("h", path, "GET") == router.routes[0]


def test_case_insensitive_router_matches_any_case() -> None:
    router = Router([route("admin", "/Admin/**"), HEALTH], case_sensitive=False)
    assert router.match("h", "/ADMIN/x", "GET") == router.routes[0]
    assert router.match("h", "/HealthZ", "GET") == HEALTH


def test_ambiguity_check_can_be_turned_off() -> None:
    router = Router([API], reject_case_ambiguous=False)
    assert router.match("h", "/API/x", "GET") is Reason.NO_ROUTE


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(route("a", "/x"), route("b", "/x", "GET"), id="same-exact-path-shared-method"),
        pytest.param(route("a", "/x/y"), route("b", "/x/**"), id="exact-under-prefix"),
        pytest.param(route("a", "/x"), route("b", "/x/**"), id="exact-equal-to-prefix"),
        pytest.param(route("a", "/x/**"), route("b", "/x/y/**"), id="prefix-contains-prefix"),
        pytest.param(route("a", "/x/y/**"), route("b", "/**"), id="catch-all-contains-everything"),
        pytest.param(route("a", "/x", host="h.com"), route("b", "/x"), id="any-host-overlaps-named-host"),
        pytest.param(route("a", "/x/**", host="h.com"), route("b", "/x/**", host="h.com"), id="same-host"),
    ],
)
def test_overlapping_routes_are_a_config_error_naming_both(a: Route, b: Route) -> None:
    for pair in ([a, b], [b, a]):
        with pytest.raises(ConfigError) as caught:
            Router(pair)
        assert "'a'" in str(caught.value)
        assert "'b'" in str(caught.value)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(route("a", "/x", "GET"), route("b", "/x", "POST"), id="disjoint-methods"),
        pytest.param(
            route("a", "/x/**", "GET"), route("b", "/x/y", "PUT"), id="prefix-and-exact-disjoint-methods"
        ),
        pytest.param(route("a", "/x", host="h.com"), route("b", "/x", host="g.com"), id="different-hosts"),
        pytest.param(route("a", "/x/**"), route("b", "/xy/**"), id="sibling-prefixes"),
        pytest.param(route("a", "/x"), route("b", "/x/"), id="trailing-slash-is-another-path"),
    ],
)
def test_non_overlapping_routes_are_accepted(a: Route, b: Route) -> None:
    assert len(Router([a, b])) == 2


def test_same_route_object_twice_overlaps_itself() -> None:
    with pytest.raises(ConfigError):
        Router([HEALTH, HEALTH])


def test_routes_differing_only_by_case_are_a_config_error() -> None:
    a, b = route("lower", "/admin/**"), route("upper", "/Admin/**")
    with pytest.raises(ConfigError, match=r"'lower'.*'upper'.*case"):
        Router([a, b])
    with pytest.raises(ConfigError, match="overlap"):
        Router([a, b], case_sensitive=False)
    assert len(Router([a, b], reject_case_ambiguous=False)) == 2


def test_route_made_unreachable_by_case_folding_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="case"):
        Router([route("api", "/api/**"), route("shouty", "/API/x")])


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(route("r", "/a//b"), id="double-slash"),
        pytest.param(route("r", "/a/../b"), id="dot-dot"),
        pytest.param(route("r", "/a%2Fb"), id="encoded-slash"),
        pytest.param(route("r", "/a%61"), id="encoded-unreserved"),
        pytest.param(route("r", "/a b"), id="space"),
        pytest.param(route("r", "/a;x"), id="parameter"),
        pytest.param(route("r", "a"), id="relative"),
        pytest.param(dataclasses.replace(API, pattern="/api/"), id="prefix-pattern-ending-in-slash"),
        pytest.param(route("r", "/a", frozenset()), id="no-methods"),
        pytest.param(route("r", "/a", host="Example.com"), id="host-not-lower-case"),
    ],
)
def test_unmatchable_route_is_a_config_error(bad: Route) -> None:
    with pytest.raises(ConfigError):
        Router([bad])


def test_repr_is_one_line() -> None:
    assert repr(ROUTER) == "<Router 5 routes, 1 hosts, case-sensitive, reject-case-ambiguous>"
    assert repr(Router([], case_sensitive=False)) == "<Router 0 routes, 0 hosts, case-insensitive>"


def test_empty_router_matches_nothing() -> None:
    assert Router([]).match("h", "/", "GET") is Reason.NO_ROUTE


# -- scale -----------------------------------------------------------------------------------------------


def _many_routes(n: int) -> list[Route]:
    routes = []
    for i in range(n):
        if i % 2:
            routes.append(route(f"r{i}", f"/svc{i}/v1/items", "GET POST"))
        else:
            routes.append(
                route(f"r{i}", f"/svc{i}/api/**", "GET", host=f"h{i % 7}.example.com" if i % 3 else None)
            )
    return routes


def test_5000_routes_build_and_match() -> None:
    routes = _many_routes(5000)
    router = Router(routes)
    assert router.match("h", "/svc4001/v1/items", "POST") == routes[4001]
    assert routes[4996].host == "h5.example.com"
    assert router.match("h5.example.com", "/svc4996/api/x/y", "GET") == routes[4996]
    assert router.match("h", "/svc4996/api/x", "GET") is Reason.NO_ROUTE  # on h5.example.com only
    assert routes[4998].host is None
    assert router.match("h5.example.com", "/svc4998/api/x", "GET") == routes[4998]
    assert router.match("h", "/svc4001/v1/items", "PUT") is Reason.METHOD_NOT_ALLOWED


def test_match_cost_does_not_grow_with_the_number_of_routes() -> None:
    small, large = Router(_many_routes(10)), Router(_many_routes(5000))

    def cost(router: Router, path: str) -> float:
        run = lambda: router.match("h", path, "GET")  # noqa: E731
        return min(timeit.repeat(run, number=2000, repeat=5, timer=time.process_time))

    # Same path shapes, hit in both; generous bound: a linear scan over 5,000 routes would be ~500x.
    assert cost(large, "/svc4001/v1/items") < 5 * cost(small, "/svc1/v1/items")  # exact
    assert cost(large, "/svc3000/api/x/y") < 5 * cost(small, "/svc0/api/x/y")  # prefix


# -- equivalence with a naive scan ---------------------------------------------------------------------


def naive(
    routes: list[Route], host: str, path: str, method: str, *, case_sensitive: bool, reject: bool
) -> Route | Reason:
    def scan(p: str, fold: bool) -> tuple[Route | None, bool]:
        path_matched = False
        for r in routes:
            if r.host is not None and r.host != host:
                continue
            rr = dataclasses.replace(r, pattern=r.pattern.lower()) if fold else r
            if rr.matches_path(p.lower() if fold else p):
                path_matched = True
                if method in r.methods:
                    return r, True
        return None, path_matched

    found, matched = scan(path, fold=not case_sensitive)
    if found is not None:
        return found
    if case_sensitive and reject and scan(path, fold=True)[0] is not None:
        return Reason.PATH_CASE_AMBIGUOUS
    return Reason.METHOD_NOT_ALLOWED if matched else Reason.NO_ROUTE


def naive_overlap(routes: list[Route], fold: bool) -> bool:
    def pat(r: Route) -> str:
        return r.pattern.lower() if fold else r.pattern

    for i, a in enumerate(routes):
        for b in routes[i + 1 :]:
            if a.host is not None and b.host is not None and a.host != b.host:
                continue
            if a.methods.isdisjoint(b.methods):
                continue
            fa, fb = dataclasses.replace(a, pattern=pat(a)), dataclasses.replace(b, pattern=pat(b))
            if (fa.prefix and fa.matches_path(fb.pattern or "/")) or (
                fb.prefix and fb.matches_path(fa.pattern or "/")
            ):
                return True
            if not fa.prefix and not fb.prefix and fa.pattern == fb.pattern:
                return True
    return False


_NAMES = st.sampled_from(["a", "A", "b", "ab"])
_SEGMENTS = st.lists(_NAMES, max_size=3).map(lambda s: "/" + "/".join(s))
_ROUTES = st.lists(
    st.builds(
        lambda p, pre, ms, h: (p, pre, ms, h),
        _SEGMENTS,
        st.booleans(),
        st.frozensets(st.sampled_from(["GET", "POST", "PUT"]), min_size=1),
        st.sampled_from([None, "x.com", "y.com"]),
    ),
    max_size=6,
)


def _draw_request(data: st.DataObject, routes: list[Route]) -> tuple[str, str, str]:
    """A request near the routes: a route's pattern, maybe extended, maybe with its case changed."""
    base = data.draw(st.sampled_from([r.pattern for r in routes] + ["", "/c"]))
    suffix = data.draw(st.sampled_from(["", "/", "/a", "/B", "/c/d", "b"]))
    path = (base.rstrip("/") + suffix) if suffix.startswith("/") else base + suffix
    path = data.draw(st.sampled_from([path, path.upper(), path.lower(), path.swapcase()]))
    path = path if path.startswith("/") else "/" + path
    host = data.draw(st.sampled_from(["x.com", "y.com", "z.com"]))
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    return host, path, method


@pytest.mark.parametrize(("case_sensitive", "reject"), [(True, True), (True, False), (False, True)])
@settings(max_examples=150, deadline=None)  # x3 modes, 10 requests each
@given(specs=_ROUTES, data=st.data())
def test_router_equals_naive_scan(
    case_sensitive: bool,
    reject: bool,
    specs: list[tuple[str, bool, frozenset[str], str | None]],
    data: st.DataObject,
) -> None:
    routes = [
        Route(
            name=f"r{i}",
            pattern="" if pre and p == "/" else p,
            prefix=pre,
            methods=ms,
            host=h,
            upstream=UP,
        )
        for i, (p, pre, ms, h) in enumerate(specs)
    ]
    overlap = naive_overlap(routes, fold=not case_sensitive) or (
        case_sensitive and reject and naive_overlap(routes, fold=True)
    )
    if overlap:
        with pytest.raises(ConfigError):
            Router(routes, case_sensitive=case_sensitive, reject_case_ambiguous=reject)
        return
    router = Router(routes, case_sensitive=case_sensitive, reject_case_ambiguous=reject)
    for _ in range(10):
        host, path, method = _draw_request(data, routes)
        expected = naive(routes, host, path, method, case_sensitive=case_sensitive, reject=reject)
        assert router.match(host, path, method) == expected, (host, path, method)
