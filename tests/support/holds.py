"""Storefronts at checkout, as the hold tests see them: hold lines, and many holds at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


def line(sku: str, qty: int, location: str | None = None) -> dict[str, Any]:
    return {"sku": sku, "qty": qty} | ({"location": location} if location else {})


def hold_body(*lines: dict[str, Any], ttl_s: int = 600, channel: str = "web") -> dict[str, Any]:
    return {"channel": channel, "lines": list(lines), "ttl_s": ttl_s}


async def _race(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, trust_env=False) as http:
        return list(await asyncio.gather(*(http.post("/v1/holds", json=b) for b in bodies)))


def race(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Every body posted at once, each by its own client connection."""
    return asyncio.run(_race(url, bodies))
