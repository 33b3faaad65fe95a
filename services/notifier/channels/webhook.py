"""A generic webhook: the notice as a CloudEvent (structured mode). Its id is derived from the delivery
key, so a receiver sees the same id when a delivery is retried and can drop the repeat."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx

from services.notifier.channels.post import post_json
from services.notifier.messages import Notice, plain_text, title
from services.notifier.routes import Target

ESCALATION_NOTICE = "duban.notifier.escalation-notice.v1"


def cloudevent(notice: Notice, key: str) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:duban:notifier:{key}")),
            "source": "/services/notifier", "type": ESCALATION_NOTICE, "subject": notice.item,
            "time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {**notice.as_json(), "title": title(notice), "text": plain_text(notice)}}


class WebhookChannel:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, target: Target, notice: Notice, key: str) -> None:
        await post_json(self.client, target.address, cloudevent(notice, key),
                        headers={"Content-Type": "application/cloudevents+json"})
