"""POSTing JSON, with the failures sorted into worth retrying or not."""

from __future__ import annotations

import httpx

from services.notifier.channels.base import DeliveryError


async def post_json(client: httpx.AsyncClient, url: str, body: dict | bytes, *,
                    headers: dict[str, str] | None = None) -> httpx.Response:
    """`body` as bytes when they must be exactly the ones signed; the caller then sets the content type."""
    try:
        if isinstance(body, bytes):
            response = await client.post(url, content=body, headers=headers)
        else:
            response = await client.post(url, json=body, headers=headers)
    except httpx.TransportError as exc:  # timeouts, refused connections, broken transfers
        raise DeliveryError(f"{type(exc).__name__}: {exc}", transient=True) from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:500]}", transient=True)
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:500]}", transient=False)
    return response
