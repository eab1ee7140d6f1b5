"""What the Alexa adapter keeps for the life of an application, under ``ALEXA_KEY``."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from staterelay.app.http import OutgoingHttp
from staterelay.browser.addresses import unreachable_reason
from staterelay.core import Core
from staterelay.core.records import Principal
from staterelay.integrations.alexa.change_report import ChangeReportSink
from staterelay.integrations.alexa.console import relay_url
from staterelay.integrations.alexa.lwa import LoginWithAmazon, TokenKeeper
from staterelay.integrations.alexa.probe import send_test_event
from staterelay.integrations.alexa.relay import lambda_zip
from staterelay.integrations.alexa.views import SmartHomeView
from staterelay.settings import Settings


class AlexaRuntime:
    """The Login with Amazon client, token keeper, ``alexa`` outbox sink and directive view.

    ``relay_secret`` is what the Lambda relay must send: ``alexa.relay_secret``, or the one
    derived from the instance's secret key.
    """

    def __init__(
        self, core: Core, settings: Settings, http: OutgoingHttp, relay_secret: str
    ) -> None:
        self.core = core
        self.settings = settings
        self.http = http
        self.relay_secret = relay_secret
        self.lwa = LoginWithAmazon(http.shared, settings.alexa, core.alexa.messaging)
        self.tokens = TokenKeeper(core, self.lwa)
        self.sink = ChangeReportSink(
            core,
            settings.alexa,
            http.shared,
            self.tokens,
            sole_sender=settings.database_url.startswith("sqlite:"),
        )
        self.view = SmartHomeView(core, settings.alexa, self.lwa, relay_secret)
        self.unreachable = unreachable_reason(relay_url(settings))
        """Why Amazon could not use the relay's URL; None when it can."""

    @property
    def self_service(self) -> bool:
        """True when the dashboard offers the relay package, its secret and the test event.

        The package carries the instance's relay secret, so with open sign-up (a hosted
        instance, where every household has an admin) the dashboard offers none of it: the
        operator uses ``staterelay alexa setup``.
        """
        return self.settings.accounts.registration != "open"

    def lambda_zip(self) -> bytes:
        """The Lambda relay package, forwarding to this instance with its relay secret."""
        return lambda_zip(relay_url(self.settings), self.relay_secret)

    async def send_test(self, principal: Principal) -> tuple[bool, str]:
        """Send the principal's user's Alexa a test event now: (accepted, what happened)."""
        return await send_test_event(
            self.core, self.settings.alexa, self.http.shared, self.tokens, principal
        )


ALEXA_KEY: Final = web.AppKey("staterelay.integrations.alexa", AlexaRuntime)
