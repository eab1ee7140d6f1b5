"""``staterelay alexa setup``: every value to paste into the Alexa developer console and AWS.

With ``--vendor-id`` it also registers the OAuth client Alexa links through, and with
``--out`` it writes the Lambda relay, so one command prepares everything StateRelay's side
needs and prints the rest, step by step, with this instance's values filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from staterelay.alexa.relay import HANDLER
from staterelay.alexa.views import PATH
from staterelay.core.oauth import OAuthClient
from staterelay.core.oauth_clients import ALEXA_REDIRECT_HOSTS, issuer_url
from staterelay.settings import Settings

# Where Amazon runs the skill for each Alexa region, and the locales it serves there.
LAMBDA_REGIONS: Final = (
    ("NA", "us-east-1", "US East (N. Virginia)", "en-US, en-CA, es-US, fr-CA, pt-BR"),
    ("EU", "eu-west-1", "EU (Ireland)", "en-GB, en-IN, de-DE, es-ES, fr-FR, it-IT"),
    ("FE", "us-west-2", "US West (Oregon)", "ja-JP, en-AU"),
)


@dataclass(frozen=True, slots=True)
class SetupPlan:
    """What ``alexa setup`` did or found: the client, the relay package and its secret."""

    clients: Sequence[tuple[str, str]]
    """(id, name) of the OAuth clients Alexa can link through."""
    new_client_secret: str | None = None
    """The secret of a client registered just now (shown once)."""
    relay_secret: str | None = None
    relay_secret_is_new: bool = False
    """True when the secret was made now and still has to go into the config."""
    relay_zip: str | None = None


def host_url(public_url: str, host: str | None) -> str:
    """The public URL, or the same scheme and port on ``host`` when one is set."""
    public = public_url.rstrip("/")
    if not host:
        return public
    parts = urlsplit(public)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def relay_url(settings: Settings) -> str:
    """The base URL the Lambda relay forwards to (the ``alexa`` host when configured)."""
    return host_url(settings.public_url, settings.server.hosts.alexa)


def alexa_clients(
    settings: Settings, registered: Sequence[OAuthClient], vendor_id: str | None = None
) -> list[tuple[str, str]]:
    """(id, name) of the OAuth clients (config file or CLI) Alexa links with.

    With ``vendor_id``, only those whose redirect URLs end in it.
    """
    found: dict[str, str] = {}
    candidates = [(c.id, c.name, c.redirect_uris) for c in settings.oauth.clients]
    candidates += [(c.id, c.name, c.redirect_uris) for c in registered]
    for client_id, name, uris in candidates:
        for uri in uris:
            parts = urlsplit(uri)
            if parts.hostname in ALEXA_REDIRECT_HOSTS and (
                vendor_id is None or parts.path.rstrip("/").endswith("/" + vendor_id)
            ):
                found.setdefault(client_id, name)
    return list(found.items())


def setup_text(
    settings: Settings, clients: Sequence[OAuthClient], suggested_secret: str | None
) -> str:
    """The setup sheet for the clients registered so far (the dashboard shows it too).

    ``suggested_secret`` is offered as a new relay secret when none is configured; the
    dashboard passes None, since the package it serves carries only a configured secret.
    """
    return setup_sheet(
        settings,
        SetupPlan(
            clients=alexa_clients(settings, clients),
            relay_secret=settings.alexa.relay_secret or suggested_secret,
            relay_secret_is_new=not settings.alexa.relay_secret and suggested_secret is not None,
        ),
    )


def setup_sheet(settings: Settings, plan: SetupPlan) -> str:
    """The setup sheet, step by step, with this instance's values filled in."""
    alexa = settings.alexa
    auth = issuer_url(settings.public_url, settings.server.hosts.auth)
    relay = relay_url(settings)
    package = plan.relay_zip or "staterelay-alexa.zip"
    lines = [
        "StateRelay: Alexa Smart Home skill setup",
        "",
        "1. Alexa developer console (developer.amazon.com/alexa/console/ask): Create Skill,",
        "   model 'Smart Home', hosting 'Provision your own'. Note the Skill ID.",
        "",
        "2. Account linking (skill > Account Linking; Auth Code Grant):",
        f"     Your Web Authorization URI:  {auth}/oauth/authorize",
        f"     Access Token URI:            {auth}/oauth/token",
    ]
    if plan.clients:
        for client_id, name in plan.clients:
            lines.append(f"     Your Client ID:              {client_id}  ({name})")
        if plan.new_client_secret:
            lines.append(
                f"     Your Secret:                 {plan.new_client_secret}  (shown only now)"
            )
        else:
            lines += [
                "     Your Secret:                 the client's secret (from the config file, or",
                "                                  shown once when it was registered)",
            ]
    else:
        lines += [
            "     Your Client ID / Secret:     run this again with --vendor-id <VENDOR_ID>, the",
            "                                  end of the Alexa Redirect URLs on that page",
        ]
    lines += [
        "     Your Authentication Scheme:  HTTP Basic (Recommended)",
        "     Scope:                       devices",
        "     Alexa Redirect URLs:         already registered for "
        + ", ".join(ALEXA_REDIRECT_HOSTS),
        "",
        "3. Permissions: turn on 'Send Alexa Events'. Then add to StateRelay's config.yaml",
        "   and restart StateRelay:",
        "     alexa:",
        "       messaging_client_id: <Alexa Client Id shown under Send Alexa Events>",
        "       messaging_client_secret: <Alexa Client Secret shown there>",
    ]
    if plan.relay_secret_is_new and plan.relay_secret:
        lines.append(f"       relay_secret: {plan.relay_secret}")
    lines += [
        "",
        "4. AWS Lambda (console.aws.amazon.com/lambda), in the region of your skill's locale:",
    ]
    for region, aws, name, locales in LAMBDA_REGIONS:
        marker = "  <- alexa.region" if region == alexa.region else ""
        lines.append(f"     {aws} {name}: {locales}{marker}")
    lines += [
        f"   Create function, runtime Python 3.12; upload {package}",
        f"   (handler {HANDLER}); add trigger 'Alexa' > 'Alexa Smart Home' with the Skill ID.",
        f"   The relay forwards every directive to {relay}{PATH}",
    ]
    if plan.relay_zip is None:
        lines.append(f"   Write the package with: staterelay alexa lambda --out {package}")
    lines += [
        "   Copy the function's ARN into the skill: Smart Home > Default endpoint; Save.",
        "",
        "5. Alexa app: More > Skills & Games > Your Skills > Dev > your skill > Enable, sign",
        "   in to StateRelay and Allow. New devices appear in Alexa by themselves.",
        "",
        "Status now:",
    ]
    if plan.relay_zip:
        lines.append(f"  relay package:          written to {plan.relay_zip}")
    if alexa.relay_secret:
        lines.append("  relay secret:           set")
    elif plan.relay_secret_is_new:
        lines.append("  relay secret:           baked into the package; add it to the config (3.)")
    else:
        lines.append(
            "  relay secret:           NOT SET: anyone who finds the URL can send directives;"
        )
        lines.append("                          `staterelay alexa setup` makes one")
    messaging = bool(alexa.messaging_client_id and alexa.messaging_client_secret)
    lines.append(
        "  proactive events:       "
        + ("configured" if messaging else "NOT CONFIGURED (step 3): Alexa gets no updates")
    )
    lines.append(f"  default region:         {alexa.region} (alexa.region)")
    if not relay.startswith("https://"):
        lines.append(
            f"  warning: the public URL is {relay}; Amazon needs https on port 443 "
            "(set server.public_url)"
        )
    lines.append("  link health per user:   GET /api/v1/integrations/alexa")
    return "\n".join(lines)
