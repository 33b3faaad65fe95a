"""A generic webhook: the notice as a CloudEvent of its kind's type (contracts/notices/) (structured mode), signed per the Standard Webhooks
specification when the route has a secret (https://www.standardwebhooks.com).

The CloudEvent id and the `webhook-id` header derive from the delivery key, so a receiver sees the
same id when a delivery is retried and can drop the repeat; `webhook-timestamp` is the attempt's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone

import httpx

from services.notifier.channels.post import post_json
from services.notifier.domain.messages import Notice, plain_text, title
from services.notifier.routes import Target, WebhookRoute


def delivery_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:duban:notifier:{key}"))


def cloudevent(notice: Notice, key: str) -> dict:
    return {"specversion": "1.0", "id": delivery_id(key), "source": "/services/notifier", "type": notice.TYPE,
            "subject": notice.subject, "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {**notice.as_json(), "title": title(notice), "text": plain_text(notice)}}


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` + base64 HMAC-SHA256 of "id.timestamp.body", keyed by the secret's base64 after `whsec_`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_request(event: dict, secret: str | None, now: float) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/cloudevents+json", "webhook-id": event["id"],
               "webhook-timestamp": str(int(now))}
    if secret:
        headers["webhook-signature"] = signature(secret, event["id"], int(now), body)
    return body, headers


class WebhookChannel:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, target: Target, notice: Notice, key: str) -> None:
        route = target.route
        assert isinstance(route, WebhookRoute)
        body, headers = signed_request(cloudevent(notice, key), route.secret, time.time())
        await post_json(self.client, target.address, body, headers=headers)
