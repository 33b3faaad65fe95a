"""What every channel shares: the Channel protocol and the DeliveryError it raises (the channel modules import
this; the package imports them)."""

from __future__ import annotations

from typing import Protocol

from services.notifier.domain.messages import Notice
from services.notifier.routes import Target


class DeliveryError(Exception):
    def __init__(self, detail: str, *, transient: bool) -> None:
        super().__init__(detail)
        self.transient = transient


class Channel(Protocol):
    async def send(self, target: Target, notice: Notice, key: str) -> None:
        """`key` names the delivery (item, level, window, channel, recipient): the same on every retry."""
