"""Delivery channels. Each sends one notice to one target and raises `DeliveryError` when it could
not, saying whether trying again later may help (timeouts, 5xx, the robot's "too fast") or not."""

from __future__ import annotations

from typing import Protocol

import httpx

from services.notifier.domain.messages import Notice
from services.notifier.routes import Target
from services.notifier.settings import NotifierSettings


class DeliveryError(Exception):
    def __init__(self, detail: str, *, transient: bool) -> None:
        super().__init__(detail)
        self.transient = transient


class Channel(Protocol):
    async def send(self, target: Target, notice: Notice, key: str) -> None:
        """`key` names the delivery (item, level, window, channel, recipient): the same on every retry."""


# Group robots refuse more than a set number of messages a minute (WeCom and DingTalk: 20).
RATE_LIMITED = frozenset({"wecom", "dingtalk"})


def make_channels(settings: NotifierSettings, client: httpx.AsyncClient) -> dict[str, Channel]:
    # Imported here: the channel modules import DeliveryError from this package.
    from services.notifier.channels.mail import EmailChannel
    from services.notifier.channels.robots import DingTalkChannel, WeComChannel
    from services.notifier.channels.webhook import WebhookChannel

    return {"wecom": WeComChannel(client), "dingtalk": DingTalkChannel(client), "webhook": WebhookChannel(client),
            "email": EmailChannel(settings)}
