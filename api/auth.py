"""API keys and scopes (SPEC section 8).

Keys are compared in constant time against every configured key, so neither the match nor
its position leaks through timing; keys are never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

from fastapi import Request

from availability import ApiKey

from .errors import ApiError

SCOPES: Final = frozenset({"read", "hold", "write", "admin"})
# The one name taken for loopback without resolving it (RFC 6761: it means this machine).
LOCALHOST: Final = "localhost"


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """Parse `KEY:SCOPE[+SCOPE...]`, comma-separated; raises ValueError saying what's wrong."""
    keys: list[ApiKey] = []
    for index, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        key, sep, scopes_text = entry.rpartition(":")
        if not sep or not key:
            raise ValueError(f"AVAIL_API_KEYS entry {index + 1} is not KEY:SCOPE[+SCOPE...]")
        scopes = frozenset(scopes_text.split("+"))
        unknown = scopes - SCOPES
        if unknown:
            raise ValueError(
                f"AVAIL_API_KEYS entry {index + 1} has unknown scope(s) {sorted(unknown)};"
                f" scopes are {sorted(SCOPES)}"
            )
        keys.append(ApiKey(key=key, scopes=scopes))
    return tuple(keys)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address: an IP literal (IPv6 also in brackets, or an
    IPv4-mapped one) that is loopback, or the name `localhost` in any case. Any other name
    is not, whatever it looks like: `127.evil.example` resolves wherever its DNS says."""
    if host.lower() == LOCALHOST:
        return True
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return False
    if not isinstance(address, ipaddress.IPv6Address):
        return not bracketed and address.is_loopback  # brackets are for IPv6 only
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class Authorizer:
    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(key.key.encode(), key.scopes) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def scopes_for(self, header: str | None) -> frozenset[str] | None:
        if not header or not header.startswith("Bearer "):
            return None
        presented = header[len("Bearer ") :].strip().encode()
        found: frozenset[str] | None = None
        for key, scopes in self._keys:
            if hmac.compare_digest(key, presented):
                found = scopes
        return found

    def check(self, scope: str, header: str | None) -> None:
        """Refuse (ApiError 401 or 403) unless the Authorization `header` holds a key with
        `scope`, or `admin`; with no keys configured everyone may."""
        if not self._keys:
            return
        scopes = self.scopes_for(header)
        if scopes is None:
            raise ApiError(
                401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>"
            )
        if scope not in scopes and "admin" not in scopes:
            raise ApiError(403, "forbidden", f"this key lacks the {scope!r} scope")

    def require(self, scope: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
        """`check` as a FastAPI dependency."""

        async def dependency(request: Request) -> None:
            self.check(scope, request.headers.get("authorization"))

        return dependency
