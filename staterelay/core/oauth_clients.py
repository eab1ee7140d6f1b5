"""OAuth clients: the scopes StateRelay grants, redirect-URI rules, the Alexa/IFTTT/Google presets
and the token rules a client gets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from staterelay.core.errors import InvalidInput
from staterelay.core.records.oauth import OAuthClient

# What each scope lets a client do, for the consent page, and the principal scopes it yields.
SCOPE_DESCRIPTIONS: Mapping[str, str] = {
    "devices": "see your devices and their state, and switch and change them",
    "ifttt": "see your devices and their state, and switch and change them (for IFTTT)",
}
SCOPE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "devices": frozenset({"read", "write"}),
    "ifttt": frozenset({"read", "write"}),
}
KNOWN_SCOPES: tuple[str, ...] = tuple(SCOPE_DESCRIPTIONS)
AUTH_METHODS: tuple[str, ...] = ("client_secret_basic", "client_secret_post")

CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{2,127}")
VENDOR_ID_PATTERN = re.compile(r"[A-Za-z0-9]{4,32}")
SERVICE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
NAME_MAX = 80
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})

# Alexa shows one redirect URL per region on the skill's Account Linking page.
ALEXA_REDIRECT_HOSTS = ("pitangui.amazon.com", "layla.amazon.com", "alexa.amazon.co.jp")
IFTTT_HOSTS = ("ifttt.com",)
# Google's account linking redirects to one of these, with the project id as the path.
GOOGLE_REDIRECT_HOSTS = (
    "oauth-redirect.googleusercontent.com",
    "oauth-redirect-sandbox.googleusercontent.com",
)
GOOGLE_PROJECT_PATTERN = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class ClientPreset:
    """What a preset fills in: display name, redirect URIs, auth method and scopes."""

    name: str
    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    scopes: tuple[str, ...]


def alexa_preset(vendor_id: str) -> ClientPreset:
    """The Alexa skill: Amazon's three regional redirect URLs, HTTP Basic, scope ``devices``."""
    if not VENDOR_ID_PATTERN.fullmatch(vendor_id or ""):
        raise InvalidInput(
            "the vendor id is the letters and digits at the end of Alexa's redirect URLs",
            field="vendor_id",
        )
    return ClientPreset(
        name="Amazon Alexa",
        redirect_uris=tuple(
            f"https://{host}/api/skill/link/{vendor_id}" for host in ALEXA_REDIRECT_HOSTS
        ),
        token_endpoint_auth_method="client_secret_basic",
        scopes=("devices",),
    )


def ifttt_preset(service_id: str) -> ClientPreset:
    """The IFTTT service: its one redirect URL, credentials in the body, scope ``ifttt``."""
    if not SERVICE_ID_PATTERN.fullmatch(service_id or ""):
        raise InvalidInput(
            "the service id is the slug in your IFTTT service's URL (lowercase)",
            field="service_id",
        )
    return ClientPreset(
        name="IFTTT",
        redirect_uris=(f"https://ifttt.com/channels/{service_id}/authorize",),
        token_endpoint_auth_method="client_secret_post",
        scopes=("ifttt",),
    )


def google_preset(project_id: str) -> ClientPreset:
    """Google Home: Google's two redirect URIs for the project, secret in the body (Basic is
    accepted too, see ``token_rules``), scope ``devices``."""
    if not GOOGLE_PROJECT_PATTERN.fullmatch(project_id or ""):
        raise InvalidInput(
            "the project id is the Google Cloud project id of your Google Home integration"
            " (6-30 lowercase letters, digits or hyphens)",
            field="project_id",
        )
    return ClientPreset(
        name="Google Home",
        redirect_uris=tuple(f"https://{host}/r/{project_id}" for host in GOOGLE_REDIRECT_HOSTS),
        token_endpoint_auth_method="client_secret_post",
        scopes=("devices",),
    )


@dataclass(frozen=True, slots=True)
class TokenRules:
    """How one client's tokens behave beyond what every client gets.

    ``keep_until_successor_used``: a rotated refresh token stays valid until the refresh
    token that replaced it is used (a refresh after the grace window issues a new pair and
    revokes the unused one), where other clients' rotated tokens count as stolen after the
    window. ``any_auth_method``: both client_secret_post and client_secret_basic are
    accepted, whichever the client was registered with.
    """

    keep_until_successor_used: bool = False
    any_auth_method: bool = False


STRICT_RULES = TokenRules()
GOOGLE_RULES = TokenRules(keep_until_successor_used=True, any_auth_method=True)


def token_rules(client: OAuthClient) -> TokenRules:
    """The token rules of ``client``: Google's account linking gets its own (it refreshes
    concurrently and keeps an old refresh token until the new one works), others are strict."""
    return GOOGLE_RULES if is_google_client(client) else STRICT_RULES


def validate_client_id(value: str) -> str:
    """A client id: 3-128 URL-safe characters."""
    if not CLIENT_ID_PATTERN.fullmatch(value or ""):
        raise InvalidInput(
            "a client id is 3 to 128 letters, digits, '.', '_', '~' or '-'", field="id"
        )
    return value


def validate_name(value: str) -> str:
    """A client's display name, shown on the consent page."""
    name = (value or "").strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise InvalidInput(f"a client name is 1 to {NAME_MAX} printable characters", field="name")
    return name


def validate_redirect_uris(uris: Iterable[str]) -> tuple[str, ...]:
    """Absolute https URIs (http only on loopback), without fragments; at least one."""
    checked: list[str] = []
    for uri in uris:
        parts = urlsplit(uri)
        loopback = parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS
        if parts.scheme != "https" and not loopback:
            raise InvalidInput(
                f"redirect URI {uri!r} must use https (http only for localhost)",
                field="redirect_uris",
            )
        if not parts.netloc or parts.fragment or "#" in uri or uri != uri.strip():
            raise InvalidInput(
                f"redirect URI {uri!r} must be absolute and carry no fragment",
                field="redirect_uris",
            )
        if uri not in checked:
            checked.append(uri)
    if not checked:
        raise InvalidInput("a client needs at least one redirect URI", field="redirect_uris")
    return tuple(checked)


def validate_auth_method(value: str) -> str:
    """``client_secret_basic`` or ``client_secret_post``."""
    if value not in AUTH_METHODS:
        raise InvalidInput(
            "the token endpoint auth method is client_secret_basic or client_secret_post",
            field="token_endpoint_auth_method",
        )
    return value


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Known scopes, each once; at least one."""
    checked: list[str] = []
    for scope in scopes:
        if scope not in SCOPE_DESCRIPTIONS:
            raise InvalidInput(
                f"unknown scope {scope!r} (known: {', '.join(KNOWN_SCOPES)})", field="scopes"
            )
        if scope not in checked:
            checked.append(scope)
    if not checked:
        raise InvalidInput("a client needs at least one scope", field="scopes")
    return tuple(checked)


def issuer_url(public_url: str, auth_host: str | None) -> str:
    """The authorization server's base URL: the public URL, or the ``auth`` host's when set."""
    public = public_url.rstrip("/")
    if not auth_host:
        return public
    parts = urlsplit(public)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{auth_host}{port}"


def permissions_for(scopes: Iterable[str]) -> frozenset[str]:
    """The principal scopes (read, write) a set of OAuth scopes yields."""
    granted: set[str] = set()
    for scope in scopes:
        granted |= SCOPE_PERMISSIONS.get(scope, frozenset())
    return frozenset(granted)


def _host_of(uri: str) -> str:
    return (urlsplit(uri).hostname or "").lower()


def is_alexa_client(client: OAuthClient) -> bool:
    """True for a client registered with Amazon's account-linking redirect URLs."""
    return any(_host_of(uri) in ALEXA_REDIRECT_HOSTS for uri in client.redirect_uris)


def is_google_client(client: OAuthClient) -> bool:
    """True for a client registered with Google's account-linking redirect URIs."""
    return any(_host_of(uri) in GOOGLE_REDIRECT_HOSTS for uri in client.redirect_uris)


def is_ifttt_client(client: OAuthClient, configured_id: str | None) -> bool:
    """True for the IFTTT service's client (by configured id, scope or redirect URL)."""
    return (
        client.id == configured_id
        or "ifttt" in client.scopes
        or any(_host_of(uri) in IFTTT_HOSTS for uri in client.redirect_uris)
    )
