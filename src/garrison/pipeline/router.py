"""The route index: (host, normalized path, method) -> Route, built once at config load (ARCHITECTURE §2.3).

Overlapping routes are refused when the index is built, so at most one route answers a request and no
lookup order can matter. A match costs one host lookup plus one dict lookup per path segment, whatever
the number of routes. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from garrison.errors import ConfigError, HttpError
from garrison.http.paths import normalize_path
from garrison.pipeline.route import Route
from garrison.reasons import Reason

MethodMap = dict[str, Route]


class _Table:
    """Routes of one host (its own plus the any-host ones): exact paths, and prefixes by pattern."""

    __slots__ = ("exact", "max_prefix_len", "prefix")

    def __init__(self) -> None:
        self.exact: dict[str, MethodMap] = {}
        self.prefix: dict[str, MethodMap] = {}  # "" is the catch-all "/**"
        self.max_prefix_len = -1

    def add(self, route: Route, key: str) -> None:
        index = self.prefix if route.prefix else self.exact
        methods = index.setdefault(key, {})
        for m in route.methods:
            methods[m] = route  # no conflict possible: overlaps were refused before
        if route.prefix:
            self.max_prefix_len = max(self.max_prefix_len, len(key))

    def lookup(self, path: str, method: str) -> Route | Reason:
        path_matched = False
        methods = self.exact.get(path)
        if methods is not None:
            route = methods.get(method)
            if route is not None:
                return route
            path_matched = True
        limit = self.max_prefix_len
        if limit < 0:
            return Reason.METHOD_NOT_ALLOWED if path_matched else Reason.NO_ROUTE
        # Prefix candidates: "", each segment boundary ("/a", "/a/b" of "/a/b/c"), then the whole path.
        # At most one route can match the method (overlaps were refused), so the order is irrelevant.
        prefix = self.prefix
        methods = prefix.get("")
        if methods is not None:
            route = methods.get(method)
            if route is not None:
                return route
            path_matched = True
        i = path.find("/", 1)
        while 0 < i <= limit:
            methods = prefix.get(path[:i])
            if methods is not None:
                route = methods.get(method)
                if route is not None:
                    return route
                path_matched = True
            i = path.find("/", i + 1)
        if len(path) <= limit:
            methods = prefix.get(path)
            if methods is not None:
                route = methods.get(method)
                if route is not None:
                    return route
                path_matched = True
        return Reason.METHOD_NOT_ALLOWED if path_matched else Reason.NO_ROUTE


class Router:
    """Matches (host, path, method) to one Route, or says why not (NO_ROUTE, METHOD_NOT_ALLOWED,
    PATH_CASE_AMBIGUOUS).

    ``host`` is lower-case without port (as ``check_host`` returns it); ``path`` is normalized
    (``normalize_path``). Matching is case-sensitive unless ``case_sensitive`` is false. With
    ``reject_case_ambiguous``, a path whose exact spelling matches no route but whose lower-cased
    spelling does is refused (ARCHITECTURE §9), so a case-insensitive backend cannot be reached around a
    route; routes that would overlap once case is ignored are then a ConfigError.
    """

    __slots__ = ("_any", "_case_sensitive", "_folded", "_folded_any", "_hosts", "routes")

    def __init__(
        self, routes: Iterable[Route], *, case_sensitive: bool = True, reject_case_ambiguous: bool = True
    ) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._case_sensitive = case_sensitive
        for route in self.routes:
            _validate(route)
        self._folded: dict[str, _Table] | None = None  # the case-folded index, when ambiguity is checked
        self._folded_any = _Table()
        if case_sensitive:
            _refuse_overlaps(self.routes, fold=False)
            self._hosts, self._any = _build(self.routes, fold=False)
            if reject_case_ambiguous:
                _refuse_overlaps(self.routes, fold=True, only_by_case=True)
                self._folded, self._folded_any = _build(self.routes, fold=True)
        else:
            _refuse_overlaps(self.routes, fold=True)
            self._hosts, self._any = _build(self.routes, fold=True)

    def match(self, host: str, path: str, method: str) -> Route | Reason:
        """The one route for this request, or the Reason there is none."""
        if not self._case_sensitive:
            path = path.lower()
        found = self._hosts.get(host, self._any).lookup(path, method)
        if self._folded is None or isinstance(found, Route):
            # An exact match is final: its lower-cased pattern matches the lower-cased path too, and no
            # other route can (case-folded overlaps were refused), so the folded lookup would agree.
            return found
        if isinstance(self._folded.get(host, self._folded_any).lookup(path.lower(), method), Route):
            return Reason.PATH_CASE_AMBIGUOUS
        return found

    def __len__(self) -> int:
        return len(self.routes)

    def __repr__(self) -> str:
        case = "case-sensitive" if self._case_sensitive else "case-insensitive"
        ambiguous = ", reject-case-ambiguous" if self._folded is not None else ""
        return f"<Router {len(self.routes)} routes, {len(self._hosts)} hosts, {case}{ambiguous}>"


def _key(route: Route, fold: bool) -> str:
    pattern = "" if route.prefix and route.pattern == "/" else route.pattern  # "/" + "/**" is "/**"
    return pattern.lower() if fold else pattern


def _validate(route: Route) -> None:
    """A route must be able to match normalized paths: its pattern is itself normalized."""
    pattern = _key(route, fold=False)
    if not route.methods:
        raise ConfigError(f"route {route.name!r}: allows no method")
    if route.prefix and pattern == "":
        return
    try:
        normal = normalize_path(pattern.encode("utf-8"))
    except HttpError:
        normal = None
    if normal != pattern or (route.prefix and pattern.endswith("/")):
        raise ConfigError(f"route {route.name!r}: path {route.path!r} is not a normalized path")
    if route.host is not None and route.host != route.host.lower():
        raise ConfigError(f"route {route.name!r}: host {route.host!r} must be lower-case")


def _ancestors(path: str) -> Iterator[str]:
    """Every prefix pattern that matches ``path``: "", each segment boundary, and ``path`` itself."""
    yield ""
    i = path.find("/", 1)
    while i != -1:
        yield path[:i]
        i = path.find("/", i + 1)
    if path:
        yield path


def _refuse_overlaps(routes: Sequence[Route], *, fold: bool, only_by_case: bool = False) -> None:
    """ConfigError naming both routes if some (host, path, method) matches two of them.

    Indexed like the router itself: each route is checked only against routes whose pattern could
    contain it (its own pattern and its segment-boundary prefixes), on the same host or any host.
    """
    index: dict[tuple[bool, str], dict[str | None, list[int]]] = {}
    for i, route in enumerate(routes):
        index.setdefault((route.prefix, _key(route, fold)), {}).setdefault(route.host, []).append(i)
    for i, route in enumerate(routes):
        key = _key(route, fold)
        candidates = [(True, a) for a in _ancestors(key)]
        if not route.prefix:
            candidates.append((False, key))
        for candidate in candidates:
            by_host = index.get(candidate)
            if by_host is None:
                continue
            if route.host is None:
                groups: Iterable[list[int]] = by_host.values()  # an any-host route meets every host
            else:
                groups = (by_host.get(route.host, []), by_host.get(None, []))
            for group in groups:
                for j in group:
                    other = routes[j]
                    if j != i and not other.methods.isdisjoint(route.methods):
                        first, second = (other, route) if j < i else (route, other)
                        raise ConfigError(_overlap_message(first, second, only_by_case))


def _overlap_message(a: Route, b: Route, only_by_case: bool) -> str:
    methods = "/".join(sorted(a.methods & b.methods))
    host = a.host or b.host or "any host"
    if only_by_case:
        return (
            f"routes {a.name!r} ({a.path}) and {b.name!r} ({b.path}) overlap when case is ignored "
            f"({methods} on {host}): with case-sensitive matching and reject_case_ambiguous, requests to "
            "one of them would always be refused as ambiguous; rename one of the paths"
        )
    return f"routes {a.name!r} ({a.path}) and {b.name!r} ({b.path}) overlap: both match {methods} on {host}"


def _build(routes: Sequence[Route], *, fold: bool) -> tuple[dict[str, _Table], _Table]:
    """One table per named host (its routes plus the any-host ones), and the any-host table."""
    any_host = _Table()
    by_host: dict[str, list[Route]] = {}
    for route in routes:
        if route.host is None:
            any_host.add(route, _key(route, fold))
        else:
            by_host.setdefault(route.host, []).append(route)
    any_host_routes = [r for r in routes if r.host is None]
    tables: dict[str, _Table] = {}
    for host, own in by_host.items():
        table = tables[host] = _Table()
        for route in (*own, *any_host_routes):
            table.add(route, _key(route, fold))
    return tables, any_host


__all__ = ["Router"]
