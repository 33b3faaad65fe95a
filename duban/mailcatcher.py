"""A local SMTP server that keeps every message it receives as an .eml file: where the notifier's
e-mail goes when the system runs on one machine (`duban run`), so its notices can be read."""

from __future__ import annotations

import re
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller


class EmlWriter:
    """aiosmtpd handler: each message to `<dir>/<received at>-<n>-<first recipient>.eml`, as received."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        self.count += 1
        recipient = re.sub(r"[^A-Za-z0-9@._-]", "_", envelope.rcpt_tos[0] if envelope.rcpt_tos else "unknown")
        # Named by the real time of receipt, like a log: the notice inside carries the one clock's instants.
        path = self.directory / f"{datetime.now():%Y%m%dT%H%M%S}-{self.count:05d}-{recipient}.eml"
        path.write_bytes(envelope.original_content)
        return "250 OK"


def start_mail_catcher(directory: Path, port: int, host: str = "127.0.0.1") -> Controller:
    """Listening once this returns; `.stop()` it when done."""
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(EmlWriter(directory), hostname=host, port=port)
    controller.start()
    return controller


def read_mail(directory: Path) -> list:
    """The caught messages, oldest first, parsed (for `duban run`'s readers and its tests)."""
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(directory.glob("*.eml"))]
