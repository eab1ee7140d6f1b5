"""The Alexa set-up guide: every value to paste into the Alexa developer console and AWS.

One list of steps feeds both ``staterelay alexa setup`` (as text) and the dashboard's Alexa
page (each value in its own field, with a check once StateRelay has seen the step happen),
so the two always show the same values: the URLs come from the public URL the server
answers on, and the relay secret is the one kept with the instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from staterelay.browser.addresses import unreachable_reason
from staterelay.core.guide import GuideStep, GuideValue, guide_text
from staterelay.core.oauth import OAuthClient
from staterelay.core.oauth_clients import ALEXA_REDIRECT_HOSTS, issuer_url
from staterelay.integrations.alexa.relay import HANDLER
from staterelay.integrations.alexa.views import PATH
from staterelay.settings import Settings

# Where Amazon runs the skill for each Alexa region, and the locales it serves there.
LAMBDA_REGIONS: Final = (
    ("NA", "us-east-1", "US East (N. Virginia)", "en-US, en-CA, es-US, fr-CA, pt-BR"),
    ("EU", "eu-west-1", "EU (Ireland)", "en-GB, en-IN, de-DE, es-ES, fr-FR, it-IT"),
    ("FE", "us-west-2", "US West (Oregon)", "ja-JP, en-AU"),
)
RUNTIME: Final = "Python 3.12"
PACKAGE: Final = "staterelay-alexa.zip"


@dataclass(frozen=True, slots=True)
class SetupPlan:
    """What the guide shows: the clients, a new client's secret, the relay and its package."""

    clients: Sequence[tuple[str, str]]
    """(id, name) of the OAuth clients Alexa can link through."""
    relay_secret: str
    relay_secret_from_config: bool = False
    new_client_secret: str | None = None
    """The secret of a client registered just now (shown once)."""
    relay_zip: str | None = None
    messaging_configured: bool = False


@dataclass(frozen=True, slots=True)
class AlexaProgress:
    """What StateRelay has seen of the set-up so far; None where it cannot tell (the CLI)."""

    relay_seen: bool | None = None
    linked: bool | None = None
    accept_grant: bool | None = None
    routine_switch: bool | None = None
    report_accepted: bool | None = None


def relay_url(settings: Settings) -> str:
    """The base URL the Lambda relay forwards to (the ``alexa`` host when configured)."""
    return settings.role_url("alexa")


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


def setup_steps(
    settings: Settings, plan: SetupPlan, progress: AlexaProgress | None = None
) -> list[GuideStep]:
    """The ten steps of docs/alexa.md with this instance's values filled in."""
    seen = progress or AlexaProgress()
    auth = issuer_url(settings.public_url, settings.server.hosts.auth)
    relay = relay_url(settings)
    problem = unreachable_reason(relay)
    package = plan.relay_zip or PACKAGE
    client_values: list[GuideValue] = [
        GuideValue("Your Web Authorization URI", f"{auth}/oauth/authorize"),
        GuideValue("Access Token URI", f"{auth}/oauth/token"),
    ]
    for client_id, name in plan.clients:
        client_values.append(GuideValue("Your Client ID", client_id, note=name))
    if plan.new_client_secret:
        client_values.append(
            GuideValue("Your Secret", plan.new_client_secret, secret=True, note="shown only now")
        )
    elif plan.clients:
        client_values.append(
            GuideValue(
                "Your Secret",
                "(shown once when the client was registered, or in the config file)",
                note="register a new client to see a new one",
            )
        )
    client_values += [
        GuideValue("Your Authentication Scheme", "HTTP Basic (Recommended)"),
        GuideValue("Scope", "devices"),
    ]
    regions = [
        GuideValue(
            f"{aws} ({name})",
            locales,
            note="alexa.region" if region == settings.alexa.region else "",
        )
        for region, aws, name, locales in LAMBDA_REGIONS
    ]
    return [
        GuideStep(
            key="https",
            title="Public HTTPS",
            text=(
                "Amazon reaches StateRelay over https on port 443, with a certificate browsers "
                "trust: put Caddy or a tunnel in front of it (docs/install.md) and set "
                "server.public_url to that address."
                + (f"\nNot yet: {relay} cannot be used, {problem}." if problem else "")
            ),
            values=(GuideValue("Public URL", relay),),
            done=problem is None,
            done_text="StateRelay has an https public URL",
        ),
        GuideStep(
            key="developer",
            title="Amazon developer account",
            text="Sign in at developer.amazon.com with your Amazon account and accept the "
            "developer terms (free).",
            links=(("Alexa developer console", "https://developer.amazon.com/alexa/console/ask"),),
        ),
        GuideStep(
            key="aws",
            title="AWS account",
            text="Create one at aws.amazon.com if you have none (a household stays in the free "
            "tier).",
            links=(("AWS Lambda console", "https://console.aws.amazon.com/lambda"),),
        ),
        GuideStep(
            key="skill",
            title="Create the skill and register it here",
            text=(
                "In the Alexa developer console: Create Skill, model 'Smart Home', hosting "
                "'Provision your own'. Open its Account Linking page: the Alexa Redirect URLs "
                "end in your vendor id (M2ABCDEF in .../link/M2ABCDEF). Give StateRelay that "
                "vendor id: it registers the OAuth client the skill links through."
            ),
            done=bool(plan.clients),
            done_text="the skill's OAuth client is registered",
        ),
        GuideStep(
            key="linking",
            title="Account Linking",
            text="On the skill's Account Linking page (Auth Code Grant), paste these and Save. "
            "The Alexa Redirect URLs are registered here already, for "
            + ", ".join(ALEXA_REDIRECT_HOSTS)
            + ".",
            values=tuple(client_values),
        ),
        GuideStep(
            key="events",
            title="Send Alexa Events",
            text=(
                "On the skill's Permissions page turn on 'Send Alexa Events', then give "
                "StateRelay the Alexa Client Id and Alexa Client Secret shown there (on the "
                "Alexa page of Integrations, or as alexa.messaging_client_id and "
                "alexa.messaging_client_secret in the config)."
            ),
            done=plan.messaging_configured,
            done_text="StateRelay has the messaging client",
        ),
        GuideStep(
            key="lambda",
            title="The Lambda relay",
            text=(
                f"In the AWS Lambda console, in the region of your skill's language, create a "
                f"function with runtime {RUNTIME}, upload {package} and add the trigger "
                "'Alexa' > 'Alexa Smart Home' with your Skill ID. Then copy the function's "
                "ARN into the skill's Smart Home page, Default endpoint, and Save."
            ),
            values=(
                GuideValue("Runtime", RUNTIME),
                GuideValue("Handler", HANDLER),
                GuideValue("Forwards to", f"{relay}{PATH}"),
                *regions,
            ),
            done=seen.relay_seen,
            done_text="the relay has reached StateRelay",
        ),
        GuideStep(
            key="enable",
            title="Enable the skill",
            text="In the Alexa app: More > Skills & Games > Your Skills > Dev, pick your skill, "
            "Enable to use, sign in to StateRelay and Allow. Alexa then sends StateRelay an "
            "AcceptGrant, and StateRelay reports every change from then on.",
            done=None if seen.linked is None else bool(seen.linked and seen.accept_grant),
            done_text="account linked and AcceptGrant received",
            extra={
                "linked": _word(seen.linked),
                "accept_grant": _word(seen.accept_grant),
            },
        ),
        GuideStep(
            key="switch",
            title="Make the switch",
            text="Devices > New device: a switch, say 'Movie mode', with 'Let it start Alexa "
            "Routines' ticked. It appears in the Alexa app by itself within seconds.",
            done=seen.routine_switch,
            done_text="a switch that can start Routines exists",
        ),
        GuideStep(
            key="routine",
            title="Make the Routine",
            text="In the Alexa app: Routines > + > When this happens > Smart Home > Movie mode > "
            "Opens, then add what should happen. Flip the switch here: StateRelay sends a "
            "ChangeReport and the Routine runs.",
            done=seen.report_accepted,
            done_text="Alexa accepted a ChangeReport",
        ),
    ]


def _word(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def setup_sheet(settings: Settings, plan: SetupPlan, progress: AlexaProgress | None = None) -> str:
    """The guide as text for ``staterelay alexa setup``, with the relay secret and status."""
    steps = setup_steps(settings, plan, progress)
    text = guide_text("StateRelay: Alexa Smart Home skill setup", steps)
    relay = relay_url(settings)
    status = ["Status now:"]
    if plan.relay_zip:
        status.append(f"  relay package:          written to {plan.relay_zip}")
    else:
        status.append(f"  relay package:          staterelay alexa setup --out {PACKAGE} writes it")
    where = "alexa.relay_secret" if plan.relay_secret_from_config else "kept with secret.key"
    status.append(f"  relay secret:           {plan.relay_secret}  ({where}; in the package)")
    status.append(
        "  proactive events:       "
        + ("configured" if plan.messaging_configured else "NOT CONFIGURED (step 6)")
    )
    status.append(f"  default region:         {settings.alexa.region} (alexa.region)")
    problem = unreachable_reason(relay)
    if problem:
        status.append(f"  warning: {relay} cannot be used by Amazon: {problem} (step 1)")
    status.append("  link health per user:   GET /api/v1/integrations/alexa")
    return text + "\n" + "\n".join(status)
