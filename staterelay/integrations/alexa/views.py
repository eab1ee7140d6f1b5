"""``POST /alexa/smart_home``: directives forwarded by the Lambda relay, answered as Alexa expects.

The relay proves itself with a shared secret header (``alexa.relay_secret``, else the one
derived from the instance's secret key, which every relay package carries);
the user is the bearer token inside the directive. Every directive-level failure is an
ErrorResponse with HTTP 200, which the relay hands to Alexa unchanged; only a body that is
not a directive at all gets HTTP 400.
"""

from __future__ import annotations

import hmac
import logging
from typing import Final

from aiohttp import web

from staterelay.core import Core
from staterelay.core.errors import NotAuthenticated, RequestTimeout, StateRelayError
from staterelay.core.facts import ALEXA_RELAY_SEEN
from staterelay.integrations.alexa.directive import (
    JSON,
    Directive,
    MalformedDirective,
    error_response,
    parse,
    salvage,
)
from staterelay.integrations.alexa.errors import (
    AcceptGrantFailed,
    AlexaError,
    InternalError,
    InvalidAuthorizationCredential,
    InvalidDirective,
    from_domain,
)
from staterelay.integrations.alexa.handlers import HANDLERS, HandlerContext
from staterelay.integrations.alexa.lwa import LoginWithAmazon
from staterelay.jsoncodec import TooDeep, decode_lenient, encode
from staterelay.settings import AlexaSettings

_LOGGER = logging.getLogger(__name__)

PATH: Final = "/alexa/smart_home"
SECRET_HEADER: Final = "X-StateRelay-Relay-Secret"
REGION_HEADER: Final = "X-StateRelay-Lambda-Region"
# The AWS regions Amazon serves each Alexa region from (one Lambda per region).
LAMBDA_REGIONS: Final = {"us-east-1": "NA", "eu-west-1": "EU", "us-west-2": "FE"}


class SmartHomeView:
    """Handles directives: authenticate the relay and the user, dispatch, shape the answer."""

    def __init__(
        self, core: Core, settings: AlexaSettings, lwa: LoginWithAmazon, relay_secret: str
    ) -> None:
        self._core = core
        self._settings = settings
        self._secret = relay_secret.encode("utf-8")
        self._relay_seen = False
        # One context per region, made once: every directive needs one.
        self._contexts = {
            region: HandlerContext(core=core, lwa=lwa, region=region)
            for region in {*LAMBDA_REGIONS.values(), settings.region}
        }

    async def post(self, request: web.Request) -> web.Response:
        """One directive in, one message out."""
        sent = request.headers.get(SECRET_HEADER, "").encode("utf-8")
        if not hmac.compare_digest(sent, self._secret):
            _LOGGER.warning("refused a directive without the relay secret from %s", request.remote)
            return _json({"error": "the relay secret is missing or wrong"}, 401)
        if not self._relay_seen:
            # The setup page's "the relay reached StateRelay" check; written once. A failed
            # write (a full disk) must not fail the directive: it is tried again next time.
            try:
                await self._core.facts.note(ALEXA_RELAY_SEEN)
                self._relay_seen = True
            except StateRelayError as exc:
                _LOGGER.warning("could not note that the Alexa relay was seen: %s", exc.detail)
        try:
            raw = await _body(request)
        except RequestTimeout as exc:
            return _json(_unparseable(exc.detail), exc.status)
        except web.HTTPRequestEntityTooLarge:
            limit = request.client_max_size
            return _json(_unparseable(f"the body is larger than {limit} bytes"), 413)
        try:
            # A number Alexa could never send (NaN, 1e400) is the directive's INVALID_VALUE
            # rather than a body refused whole, as the standard library would read it.
            body = decode_lenient(raw)
        except TooDeep as exc:
            return _json(_unparseable(str(exc)), 400)
        except ValueError:
            return _json(_unparseable("the body is not JSON"), 400)
        try:
            message = await self.handle(body, request.headers.get(REGION_HEADER))
        except MalformedDirective as exc:
            return _json(_unparseable(str(exc)), 400)
        return _json(message, 200)

    async def handle(self, body: object, lambda_region: str | None = None) -> JSON:
        """The answer to a directive body (raises ``MalformedDirective`` only)."""
        try:
            directive = parse(body)
        except AlexaError as error:
            namespace, correlation_token, endpoint_id = salvage(body)
            if namespace == "Alexa.Authorization":
                error = AcceptGrantFailed(error.message)
            return error_response(error, correlation_token, endpoint_id)
        try:
            return await self._dispatch(directive, lambda_region)
        except AlexaError as error:
            return directive.error(self._translate(directive, error))
        except StateRelayError as error:
            return directive.error(self._translate(directive, from_domain(error)))
        except Exception:
            _LOGGER.exception(
                "directive %s.%s for %s failed",
                directive.namespace,
                directive.name,
                directive.endpoint_id or "-",
            )
            return directive.error(
                self._translate(directive, InternalError("StateRelay hit an unexpected error"))
            )

    async def _dispatch(self, directive: Directive, lambda_region: str | None) -> JSON:
        handler = HANDLERS.get(directive.key)
        if handler is None:
            raise self._translate(
                directive,
                InvalidDirective(f"{directive.namespace}.{directive.name} is not supported"),
            )
        if directive.token is None:
            raise self._translate(
                directive, InvalidAuthorizationCredential("the directive carries no bearer token")
            )
        try:
            principal = await self._core.auth.authenticate_linked_app(directive.token)
        except NotAuthenticated as error:
            raise self._translate(directive, from_domain(error)) from None
        await self._core.billing.check_integration(principal.tenant_id, "alexa")  # hosted
        region = LAMBDA_REGIONS.get(lambda_region or "", self._settings.region)
        return await handler(self._contexts[region], directive, principal)

    @staticmethod
    def _translate(directive: Directive, error: AlexaError) -> AlexaError:
        """AcceptGrant can only fail with ACCEPT_GRANT_FAILED."""
        if directive.namespace == "Alexa.Authorization" and not isinstance(
            error, AcceptGrantFailed
        ):
            return AcceptGrantFailed(error.message)
        return error


async def _body(request: web.Request) -> bytes:
    """The request body.

    A directive is a few hundred bytes and has all arrived by the time the view runs: it is
    taken as it lies in the stream, sparing ``request.read()``'s loop of awaits on every
    directive. A body still arriving, too large or failed is read by ``request.read()``,
    which applies the size limit (413) and the request boundary's deadline.
    """
    content = request.content
    if (
        content.is_eof()
        and content.exception() is None
        and content.total_bytes <= request.client_max_size
    ):
        return content.read_nowait()
    return await request.read()


def _unparseable(reason: str) -> JSON:
    return error_response(InvalidDirective(reason), None, None)


def _json(data: object, status: int) -> web.Response:
    return web.Response(body=encode(data), status=status, content_type="application/json")
