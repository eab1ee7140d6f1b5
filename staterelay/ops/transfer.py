"""Moving devices between instances as JSON: ``staterelay export`` and ``staterelay import``.

The document is ``{"version": 1, "devices": [{id, type, name, description, room, options,
state}]}`` (``room`` is optional: exports of older versions have none). Import goes through
core like any other client (create, then set the state, with source ``cli``), so every
rule, activity row and webhook applies. It keeps device ids, which are Alexa's endpoint ids,
unless asked for new ones, and skips a device whose name the household already has, so
running the same import twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from staterelay.core import Core
from staterelay.core.device_types import device_type, normalize_properties, validate_options
from staterelay.core.errors import Conflict, StateRelayError
from staterelay.core.records import Device, Principal

EXPORT_VERSION = 1
IMPORT_CAUSE = "import"


class TransferError(Exception):
    """The document cannot be exported or imported; the message says why, on one line."""


@dataclass
class ImportReport:
    """What an import did, device by device."""

    created: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def cli_principal(tenant_id: str, user_id: str | None) -> Principal:
    """The principal command-line work acts as: full rights on one tenant."""
    return Principal(
        tenant_id=tenant_id,
        user_id=user_id or "",
        scopes=frozenset({"read", "write"}),
        credential="cli",
        credential_id=user_id or "local",
    )


async def _principal(core: Core, email: str | None, *, create: bool) -> Principal | None:
    """The household's (or ``email``'s tenant's) principal; None when there is no household."""
    if email is not None:
        user = await core.users.by_email(email)
        return cli_principal(user.tenant_id, user.id)
    if create:
        return cli_principal((await core.users.household()).id, None)
    tenant = await core.store.first_tenant()
    return None if tenant is None else cli_principal(tenant.id, None)


def device_document(device: Device) -> dict[str, Any]:
    """One device as the export writes it."""
    return {
        "id": device.id,
        "type": device.type,
        "name": device.name,
        "description": device.description,
        "room": device.room,
        "options": dict(device.options),
        "state": {name: prop.value for name, prop in device.properties.items()},
    }


async def export_devices(core: Core, email: str | None = None) -> dict[str, Any]:
    """Every device of the household (or of ``email``'s tenant), in creation order."""
    principal = await _principal(core, email, create=False)
    devices: list[dict[str, Any]] = []
    if principal is not None:
        cursor: str | None = None
        while True:
            page = await core.devices.list(principal, cursor=cursor, limit=200)
            devices.extend(device_document(device) for device in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return {"version": EXPORT_VERSION, "devices": devices}


def parse_document(document: Any) -> list[Mapping[str, Any]]:
    """The device entries of an export document; ``TransferError`` if it is not one."""
    if not isinstance(document, dict) or "devices" not in document:
        raise TransferError('not a StateRelay device export (no "devices" list)')
    version = document.get("version")
    if version != EXPORT_VERSION:
        raise TransferError(
            f"export version {version!r} is not supported (this StateRelay reads "
            f"version {EXPORT_VERSION})"
        )
    entries = document["devices"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TransferError('"devices" must be a list of objects')
    return entries


async def import_devices(
    core: Core,
    entries: Sequence[Mapping[str, Any]],
    *,
    email: str | None = None,
    new_ids: bool = False,
) -> ImportReport:
    """Create the devices in the household (or ``email``'s tenant); see the module notes."""
    principal = await _principal(core, email, create=True)
    assert principal is not None
    report = ImportReport()
    taken: set[str] = set()
    cursor: str | None = None
    while True:
        page = await core.devices.list(principal, cursor=cursor, limit=200)
        taken.update(device.name.casefold() for device in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    for position, entry in enumerate(entries, start=1):
        name = entry.get("name")
        label = name if isinstance(name, str) and name else f"device #{position}"
        if isinstance(name, str) and name.strip().casefold() in taken:
            report.skipped.append((label, "a device of this name exists"))
            continue
        try:
            device = await _import_one(core, principal, entry, new_ids=new_ids)
        except _Failed as exc:
            report.failed.append((label, str(exc)))
            continue
        taken.add(device.name.casefold())
        report.created.append((device.name, device.id))
    return report


class _Failed(Exception):
    """One device could not be imported."""


async def _import_one(
    core: Core, principal: Principal, entry: Mapping[str, Any], *, new_ids: bool
) -> Device:
    device_id = None if new_ids else entry.get("id")
    if device_id is not None and not isinstance(device_id, str):
        raise _Failed("id must be a string")
    state = entry.get("state") or {}
    if not isinstance(state, dict):
        raise _Failed("state must be an object")
    try:
        kind = device_type(entry.get("type"))
        wanted = _settable(kind.property_names, state) if not kind.momentary else {}
        # Check the state before creating anything: a device is imported whole or not at all.
        if wanted:
            normalize_properties(kind, wanted, validate_options(kind, entry.get("options")))
        device = await core.devices.create(
            principal,
            type=entry.get("type"),
            name=entry.get("name"),
            description=entry.get("description"),
            options=entry.get("options"),
            room=entry.get("room"),
            source="cli",
            device_id=device_id,
        )
    except Conflict as exc:
        if exc.field == "id":
            raise _Failed(
                f"id {device_id} is taken on this instance; use --new-ids to import it "
                "under a new id"
            ) from None
        raise _Failed(exc.detail) from None
    except StateRelayError as exc:
        raise _Failed(exc.detail) from None
    if wanted:
        device = await core.devices.set_state(
            principal, device.id, wanted, source="cli", cause=IMPORT_CAUSE
        )
    return device


def _settable(names: Sequence[str], state: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise _Failed(f"unknown property {unknown[0]!r} in state")
    return dict(state)
