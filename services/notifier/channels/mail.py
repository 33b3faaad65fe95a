"""E-mail through the configured SMTP server (aiosmtplib): UTF-8 subject and body (with an HTML alternative and
attachments when the notice has them: the 督查通报), and a Message-ID derived from the delivery key, so a
retried mail is recognisably the same mail."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.notifier.channels.base import DeliveryError
from services.notifier.domain.messages import Notice, plain_text, title
from services.notifier.routes import Target
from services.notifier.settings import NotifierSettings

# Connection-level failures: the server may answer next time.
_TRANSIENT = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)


def compose(notice: Notice, sender: str, to: str, key: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = title(notice)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{uuid.uuid5(uuid.NAMESPACE_URL, f'urn:duban:notifier:{key}')}@{sender.split('@')[-1]}>"
    message.set_content(plain_text(notice), charset="utf-8")
    if (body := notice.html_body()) is not None:
        message.add_alternative(body, subtype="html", charset="utf-8")
    for attachment in notice.attachments():
        # A non-ASCII filename goes out as RFC 2231 `filename*=utf-8''…` (the email package's default policy).
        maintype, subtype = attachment.media_type.split("/", 1)
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    return message


class EmailChannel:
    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings

    async def send(self, target: Target, notice: Notice, key: str) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                compose(notice, s.smtp_sender, target.address, key), hostname=s.smtp_host, port=s.smtp_port,
                username=s.smtp_username, password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                start_tls=s.smtp_starttls, use_tls=s.smtp_tls, timeout=s.delivery_timeout_s)
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx is "try again later" in SMTP; 5xx is final.
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", transient=400 <= exc.code < 500) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipients refused: {exc.recipients}",
                                transient=all(400 <= r.code < 500 for r in exc.recipients)) from exc
        except _TRANSIENT as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", transient=True) from exc
        except aiosmtplib.SMTPException as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", transient=False) from exc
