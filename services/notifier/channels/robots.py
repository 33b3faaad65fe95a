"""WeCom (企业微信) and DingTalk (钉钉) group robots: markdown messages to a webhook.

Both answer HTTP 200 with `{"errcode": 0, "errmsg": "ok"}` on success and a non-zero errcode
otherwise; only their "sending too fast" codes are worth retrying."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

import httpx

from services.notifier.channels.base import DeliveryError
from services.notifier.channels.post import post_json
from services.notifier.domain.messages import Notice, markdown, title
from services.notifier.routes import DingTalkRoute, Target

WECOM_TOO_FAST = {45009}
DINGTALK_TOO_FAST = {130101, 410100}


async def _post_robot(client: httpx.AsyncClient, url: str, body: dict, too_fast: set[int]) -> None:
    response = await post_json(client, url, body)
    try:
        answer = response.json()
        code = int(answer.get("errcode", 0))
    except (ValueError, AttributeError) as exc:
        raise DeliveryError(f"unreadable robot answer: {response.text[:500]}", transient=True) from exc
    if code:
        raise DeliveryError(f"robot errcode {code}: {answer.get('errmsg', '')}", transient=code in too_fast)


class WeComChannel:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, target: Target, notice: Notice, key: str) -> None:
        await _post_robot(self.client, target.address,
                          {"msgtype": "markdown", "markdown": {"content": markdown(notice)}}, WECOM_TOO_FAST)


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """加签: HMAC-SHA256 of "timestamp\\nsecret" keyed by the secret, base64, URL-encoded (DingTalk
    robot security settings). DingTalk refuses a timestamp more than an hour off its own clock."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={quote_plus(base64.b64encode(digest))}"


class DingTalkChannel:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, target: Target, notice: Notice, key: str) -> None:
        route = target.route
        assert isinstance(route, DingTalkRoute)
        # DingTalk checks the signature's timestamp against its real clock, whatever the services' clock says.
        url = dingtalk_signed_url(target.address, route.secret, int(time.time() * 1000)) if route.secret else target.address
        await _post_robot(self.client, url,
                          {"msgtype": "markdown", "markdown": {"title": title(notice), "text": markdown(notice)}},
                          DINGTALK_TOO_FAST)
