"""The bus events' JSON form between replicas: every event survives the round trip."""

from __future__ import annotations

import json

import pytest

from staterelay.core.event_codec import RELAYED_EVENTS, VERSION, decode_event, encode_event
from staterelay.core.events import (
    ActivityRecorded,
    DeviceAdded,
    DeviceRemoved,
    DeviceUpdated,
    Event,
    OutboxEnqueued,
    PropertyChanged,
    StateChanged,
)
from staterelay.core.records import ActivityEntry, Device, PropertyState

DIMMER = Device(
    seq=7,
    id="dev_01HZX",
    tenant_id="ten_1",
    type="dimmer",
    name="Küche: Decke",
    description="over the table",
    options={"alexa_contact_mirror": False, "icon": None},
    properties={
        "power": PropertyState("ON", 1_760_000_000.25),
        "brightness": PropertyState(42, 1_760_000_001.5),
    },
    version=12,
    created_at=1_750_000_000.0,
    updated_at=1_760_000_001.5,
)
SENSOR = Device(
    seq=8,
    id="dev_02",
    tenant_id="ten_1",
    type="temperature_sensor",
    name="Porch",
    description="",
    options={"scale": "CELSIUS"},
    properties={"temperature": PropertyState({"value": 21.5, "scale": "CELSIUS"}, 1.0)},
    version=1,
    created_at=1.0,
    updated_at=1.0,
)


def entry(n: int, **changes: object) -> ActivityEntry:
    """An activity row."""
    fields: dict[str, object] = {
        "id": n,
        "tenant_id": "ten_1",
        "device_id": DIMMER.id,
        "device_name": DIMMER.name,
        "kind": "state",
        "source": "api",
        "actor": "key:abc",
        "cause": None,
        "property": "brightness",
        "old_value": 10,
        "new_value": 42,
        "detail": {"status": 202, "nested": {"list": [1, 2.5, "x"]}},
        "created_at": 1_760_000_001.5,
    }
    fields.update(changes)
    return ActivityEntry(**fields)  # type: ignore[arg-type]


EVENTS: list[Event] = [
    StateChanged(
        tenant_id="ten_1",
        device=DIMMER,
        changes=(PropertyChanged("brightness", 10, 42), PropertyChanged("power", "OFF", "ON")),
        source="alexa",
        cause="VOICE_INTERACTION",
        actor=None,
        activity=(entry(1), entry(2, property="power", old_value="OFF", new_value="ON")),
    ),
    StateChanged(
        tenant_id="ten_1",
        device=SENSOR,
        changes=(),
        source="ifttt",
        cause=None,
        actor="user_1",
        activity=(),
        pressed=True,
    ),
    DeviceAdded("ten_1", SENSOR, entry(3, kind="added", property=None, detail={})),
    DeviceUpdated("ten_1", SENSOR, DIMMER, (entry(4, kind="renamed"),)),
    DeviceRemoved("ten_1", DIMMER, entry(5, kind="removed", device_id=None)),
    ActivityRecorded("ten_1", (entry(6, kind="delivery", source="webhook"), entry(7))),
    ActivityRecorded("ten_2"),
    OutboxEnqueued(rows=3),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_survives_the_round_trip(event: Event) -> None:
    """Decoding gives an equal event of the same type, and the sender's origin."""
    origin, decoded = decode_event(encode_event(event, "proc-a"))
    assert origin == "proc-a"
    assert type(decoded) is type(event)
    assert decoded == event


def test_every_relayed_type_is_covered() -> None:
    """The round trip above exercises each event type the bus relays."""
    assert {type(e) for e in EVENTS} == set(RELAYED_EVENTS)


def test_the_envelope_is_compact_versioned_json() -> None:
    """One line of JSON without padding, with the version, origin and type up front."""
    data = encode_event(OutboxEnqueued(rows=1), "proc-a")
    assert data == b'{"v":1,"o":"proc-a","t":"OutboxEnqueued","e":{"rows":1}}'
    assert json.loads(data)["v"] == VERSION


def test_fields_from_a_newer_replica_are_ignored() -> None:
    """A record field this version does not know is dropped, not an error."""
    envelope = json.loads(encode_event(EVENTS[2], "proc-b"))
    envelope["e"]["device"]["colour"] = "red"
    envelope["e"]["activity"]["mood"] = "calm"
    origin, decoded = decode_event(json.dumps(envelope))
    assert (origin, decoded) == ("proc-b", EVENTS[2])


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v":1,"o":"p","t":"OutboxEnqueued"}',
        b'{"v":2,"o":"p","t":"OutboxEnqueued","e":{"rows":1}}',
        b'{"v":1,"o":"p","t":"SecretThing","e":{}}',
        b'{"v":1,"o":"p","t":"DeviceAdded","e":{"tenant_id":"t"}}',
        b'{"v":1,"o":"p","t":"OutboxEnqueued","e":{"rows":"many"}}',
    ],
)
def test_malformed_envelopes_are_refused(data: bytes) -> None:
    """Anything that is not a known event of this version raises ValueError."""
    with pytest.raises(ValueError, match=r"."):
        decode_event(data)


def test_only_bus_events_can_be_encoded() -> None:
    """Encoding something else is a programming error, not a silent drop."""
    with pytest.raises(TypeError):
        encode_event(PropertyChanged("power", "OFF", "ON"), "p")  # type: ignore[arg-type]
