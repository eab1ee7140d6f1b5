"""Sending e-mail over SMTP with aiosmtplib (``email.smtp`` in the configuration)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from staterelay.core.mail import Mail
from staterelay.settings import EmailSettings


class SmtpMailer:
    """A ``Mailer`` that opens one SMTP connection per message (resets and invites are rare)."""

    def __init__(self, settings: EmailSettings) -> None:
        assert settings.smtp.host, "email.smtp.host is not set"
        assert settings.from_address, "email.from_address is not set"
        self._settings = settings

    async def send(self, mail: Mail) -> None:
        """Send ``mail``; ``OSError`` (aiosmtplib's errors included) when the server refuses."""
        smtp = self._settings.smtp
        message = EmailMessage()
        message["From"] = str(self._settings.from_address)
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="staterelay")
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(mail.text)
        try:
            await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password,
                use_tls=smtp.security == "tls",
                start_tls=smtp.security == "starttls",
                timeout=smtp.timeout_seconds,
            )
        except aiosmtplib.SMTPException as exc:
            raise OSError(f"the mail server refused the message: {exc}") from None
