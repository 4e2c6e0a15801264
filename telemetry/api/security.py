"""Protection of the state-changing routes: same-origin for every POST/PUT/DELETE of ours, and an admin token for
prune and config writes when the server listens beyond loopback.

- Cross-origin: a request whose `Origin` header names another host:port than its `Host` header is refused with a
  403 (a web page elsewhere cannot make a visitor's browser change telemetry). Requests without `Origin` (curl,
  scripts) pass. ComfyUI's own check only covers loopback hosts; ours covers every host.
- Admin routes (`DELETE /telemetry/runs`, `PUT /telemetry/config`): when the server listens beyond loopback
  they need `Authorization: Bearer <TELEMETRY_ADMIN_TOKEN>` (401 without it or with a wrong one); with no token
  configured they answer 403 saying to set one. On loopback they are as open as ComfyUI's own routes.
- Reads are never restricted here.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_TOKEN_ENV = "TELEMETRY_ADMIN_TOKEN"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class Refused(Exception):
    """A request refused by the protection: `status` (401/403) and a message that says what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def is_loopback_address(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listens_beyond_loopback(addresses: Iterable[str] | str | None) -> bool:
    """True when any listen address is not a loopback one (0.0.0.0, ::, a LAN address, a host name).
    `addresses`: ComfyUI's `--listen` value (a comma list) or a list of them."""
    if addresses is None:
        return False
    items = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    items = [a.strip() for a in items if a and a.strip()]
    return any(not is_loopback_address(a) for a in items)


def _host_port(netloc: str, scheme: str) -> tuple[str, int | None]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    return (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(origin: str, host: str, scheme: str) -> bool:
    """Whether `origin` (an Origin header) names the same host and port as `host` (the Host header)."""
    parsed = urlsplit(origin.strip())
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.netloc:
        return False  # "null", file://, garbage
    origin_host, origin_port = _host_port(parsed.netloc, parsed.scheme)
    host_host, host_port = _host_port(host, scheme)
    if host_port is None:
        host_port = _DEFAULT_PORTS.get(parsed.scheme)
    return bool(origin_host) and origin_host == host_host and origin_port == host_port


def bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


SERVE_TOKEN_ENV = "TELEMETRY_TOKEN"


def token_middleware(token: str, prefixes: tuple[str, ...] = ("/telemetry", "/api/")) -> Callable:
    """An aiohttp middleware for `python -m telemetry serve --token`: every request under `prefixes` needs
    `Authorization: Bearer <token>` (401 otherwise); the page and its scripts load without it and ask once."""

    @web.middleware
    async def require_token(request: web.Request, handler: Callable) -> web.StreamResponse:
        if request.path.startswith(prefixes) and not bearer_matches(request, token):
            return web.json_response(
                {"error": f"this server needs 'Authorization: Bearer <token>' (the --token / {SERVE_TOKEN_ENV} it "
                          "was started with); missing or wrong token"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="telemetry"'})
        return await handler(request)

    return require_token


@dataclass
class Protection:
    """What the routes check. `exposed` says whether the server listens beyond loopback (asked per request, so
    the plugin can read ComfyUI's arguments late); `admin_token` is TELEMETRY_ADMIN_TOKEN."""

    admin_token: str | None = None
    exposed: Callable[[], bool] = field(default=lambda: False)

    def check_origin(self, request: web.Request) -> None:
        if request.method in SAFE_METHODS:
            return
        origin = request.headers.get("Origin")
        if origin is None:
            return
        host = request.headers.get("Host", "")
        if not same_origin(origin, host, request.scheme):
            raise Refused(403, f"cross-origin request refused: Origin {origin[:100]!r} does not match Host "
                               f"{host[:100]!r}; telemetry changes are only accepted from the page ComfyUI serves")

    def check_admin(self, request: web.Request) -> None:
        try:
            exposed = bool(self.exposed())
        except Exception:
            exposed = True  # unknown: be safe
        if not exposed:
            return
        if not self.admin_token:
            raise Refused(403, f"this server listens beyond loopback: set {ADMIN_TOKEN_ENV} (environment or the "
                               "config file's admin_token) and send it as 'Authorization: Bearer <token>' to prune "
                               "runs or change the config")
        if not bearer_matches(request, self.admin_token):
            raise Refused(401, f"this route needs 'Authorization: Bearer <{ADMIN_TOKEN_ENV}>' (missing or wrong "
                               "token); in the panel, set it in the Run Telemetry settings",
                          {"WWW-Authenticate": 'Bearer realm="telemetry"'})
