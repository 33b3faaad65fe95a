"""Delivery channels. Each sends one notice to one target and raises `DeliveryError` when it could
not, saying whether trying again later may help (timeouts, 5xx, the robot's "too fast") or not."""

from __future__ import annotations

import httpx

from services.notifier.channels.base import Channel, DeliveryError
from services.notifier.channels.mail import EmailChannel
from services.notifier.channels.robots import DingTalkChannel, WeComChannel
from services.notifier.channels.webhook import WebhookChannel
from services.notifier.settings import NotifierSettings

__all__ = ["RATE_LIMITED", "Channel", "DeliveryError", "make_channels"]


# Group robots refuse more than a set number of messages a minute (WeCom and DingTalk: 20).
RATE_LIMITED = frozenset({"wecom", "dingtalk"})


def make_channels(settings: NotifierSettings, client: httpx.AsyncClient) -> dict[str, Channel]:
    return {"wecom": WeComChannel(client), "dingtalk": DingTalkChannel(client), "webhook": WebhookChannel(client),
            "email": EmailChannel(settings)}
