"""A small synchronous client for the control-plane API, shared by every CLI command.

Everything the CLI does to a running control plane goes through here: TLS verified against the
config's ``control_plane.ca_file`` (never the system store), admin auth by bearer token or SVID,
and one translation of failures into ``CliError`` — a network/TLS failure says which URL could not
be reached, an API failure shows the API's error code and public message. Secrets (admin token,
keys, tokens) never appear in an error.
"""

from __future__ import annotations

import argparse
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from garrison.errors import GarrisonError

if TYPE_CHECKING:  # httpx is imported when a command runs, not when the parser is built
    import httpx

DEFAULT_CONFIG = "garrison.yaml"
TIMEOUT = 15.0


class CliError(GarrisonError):
    """A command failed in a way the user can act on; ``str()`` is the one line printed. Exit 1."""

    exit_code = 1


class ApiError(CliError):
    """The control plane answered with an error: its code (``error``) and public message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Target:
    """Where the control plane is and how to trust it, read from garrison.yaml."""

    base_url: str
    ca_file: Path
    admin_token_file: Path | None
    trust_domain: str
    config_path: Path


def load_target(config: str | Path) -> Target:
    """The control plane named by ``config``'s ``control_plane:`` section (paths relative to the file)."""
    from garrison.config.loader import load_config
    from garrison.config.models import ControlPlaneConfig
    from garrison.control.plane import resolve

    path = Path(config)
    if not path.exists():
        raise CliError(f"config file {path} not found (give one with -c FILE, or run `garrison init DIR`)")
    cfg = load_config(path)
    cp = cfg.control_plane or ControlPlaneConfig()
    base = path.parent
    tok = resolve(base, cp.admin_token_file) if cp.admin_token_file else None
    return Target(cp.base_url, resolve(base, cp.ca_file), tok, cfg.trust_domain, path)


def read_admin_token(path: Path | None) -> str:
    """The admin bearer token from its file (which must be 0600, like every secret file)."""
    from garrison.control.plane import read_secret_file

    if path is None:
        raise CliError("no admin token: set control_plane.admin_token_file or pass --admin-token-file")
    token = read_secret_file(path)
    if not token.isascii() or not token.isprintable() or " " in token:
        raise CliError(f"{path} does not hold a usable bearer token (one line of printable ASCII)")
    return token


def tls_context(ca_file: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """Verify the control plane with ``ca_file`` only; present ``cert`` (chain, key) for mTLS."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise CliError(f"cannot load the control plane's CA file {ca_file}: {_os_reason(e)}") from None
    if cert is not None:
        try:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        except (OSError, ssl.SSLError) as e:
            raise CliError(f"cannot load certificate {cert[0]} / key {cert[1]}: {_os_reason(e)}") from None
    return ctx


def _os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__ if not str(e) else str(e).splitlines()[0][:200]


class ApiClient:
    """One HTTPS connection pool to the control plane. Use as a context manager."""

    def __init__(
        self,
        base_url: str,
        ca_file: Path,
        *,
        admin_token: str | None = None,
        cert: tuple[Path, Path] | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        import httpx

        if not base_url.startswith("https://"):
            raise CliError(f"the control-plane URL must be https://, got {base_url[:80]!r}")
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            verify=tls_context(ca_file, cert),
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must not see admin tokens
        )

    @classmethod
    def for_target(
        cls,
        target: Target,
        *,
        admin: bool = False,
        admin_token_file: str | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> ApiClient:
        token = None
        if admin:
            token = read_admin_token(Path(admin_token_file) if admin_token_file else target.admin_token_file)
        return cls(target.base_url, target.ca_file, admin_token=token, cert=cert)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"<ApiClient {self.base_url}>"

    def send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The raw response; transport failures become one clear ``CliError``."""
        import httpx

        try:
            return self._client.request(method, path, json=json_body, data=form, params=params)
        except httpx.TransportError as e:
            raise CliError(
                f"cannot reach the control plane at {self.base_url}: {_transport_reason(e)}"
            ) from None
        except httpx.HTTPError as e:  # redirects, decoding: say which, never the request's headers
            raise CliError(
                f"bad answer from the control plane at {self.base_url}: {type(e).__name__}"
            ) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Send and return the JSON body of a 2xx answer (None for 204); raise ``ApiError`` otherwise."""
        r = self.send(method, path, json_body=json_body, form=form, params=params)
        if r.status_code >= 400:
            raise api_error(r)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise CliError(f"the control plane at {self.base_url} sent a non-JSON answer to {path}") from None


def api_error(r: httpx.Response) -> ApiError:
    """``/v1`` errors carry ``error``+``message`` (+``detail``); ``/oauth2`` ones RFC 6749 §5.2 bodies."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"][:100]
        msg = body.get("message") or body.get("error_description") or ""
        detail = body.get("detail")
        text = str(msg)[:300]
        if isinstance(detail, str) and detail:
            text = f"{text}: {detail[:300]}" if text else detail[:300]
        return ApiError(r.status_code, code, text or code)
    return ApiError(r.status_code, "http_error", r.reason_phrase or "unexpected answer")


def _transport_reason(e: httpx.TransportError) -> str:
    import httpx

    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or cause.__class__.__name__})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is it running? `garrison up` or `garrison control-plane`)"
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    text = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    return text


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"path to garrison.yaml (default ./{DEFAULT_CONFIG})"
    )
    p.add_argument("--url", help="control-plane base URL (default: from the config)")
    p.add_argument("--ca-file", help="PEM roots that verify the control plane (default: from the config)")


def target_from_args(args: argparse.Namespace) -> Target:
    """``--url`` + ``--ca-file`` work without a config file (a workload host); else the config."""
    url, ca = getattr(args, "url", None), getattr(args, "ca_file", None)
    if url and not url.startswith("https://"):  # never send a token or an admin secret in the clear
        raise CliError("--url must be https:// (the control plane is only served over TLS)")
    if url and ca and not Path(args.config).exists():
        return Target(url.rstrip("/"), Path(ca), None, "", Path(args.config))
    t = load_target(args.config)
    return Target(
        (url or t.base_url).rstrip("/"),
        Path(ca) if ca else t.ca_file,
        t.admin_token_file,
        t.trust_domain,
        t.config_path,
    )


def add_admin_args(p: argparse.ArgumentParser) -> None:
    add_config_arg(p)
    p.add_argument(
        "--admin-token-file", help="file holding the admin token (default: control_plane.admin_token_file)"
    )


def admin_client(args: argparse.Namespace) -> ApiClient:
    """An admin client for a command parsed with ``add_admin_args``."""
    return ApiClient.for_target(target_from_args(args), admin=True, admin_token_file=args.admin_token_file)


def print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True))


__all__ = [
    "DEFAULT_CONFIG",
    "ApiClient",
    "ApiError",
    "CliError",
    "Target",
    "add_admin_args",
    "add_config_arg",
    "admin_client",
    "api_error",
    "load_target",
    "print_json",
    "read_admin_token",
    "target_from_args",
    "tls_context",
]
