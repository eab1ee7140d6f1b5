"""Outgoing e-mail as core sees it: a message and something that sends it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Mail:
    """One plain-text message to one address."""

    to: str
    subject: str
    text: str


class Mailer(Protocol):
    """Sends mail (``staterelay.mailer`` over SMTP); raises ``OSError`` when it cannot."""

    async def send(self, mail: Mail) -> None:
        """Hand the message to the mail server."""
        ...
