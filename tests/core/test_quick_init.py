"""``quick_init``: the faster ``__init__`` behaves as the one ``dataclass`` generates."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest

from staterelay.core.records import Device, PropertyState
from staterelay.core.records.quick_init import quick_init


def _record_class(name: str) -> Any:
    """A fresh record class with a plain field, a default and a default factory."""

    @dataclass(frozen=True, slots=True)
    class Record:
        name: str
        level: int = 3
        tags: dict[str, Any] = field(default_factory=dict)

    Record.__name__ = Record.__qualname__ = name
    return Record


Plain = _record_class("Plain")  # with the __init__ dataclass generates, to compare against
Quick = quick_init(_record_class("Quick"))


@quick_init
@dataclass(frozen=True, slots=True)
class Child(Quick):
    """A subclass adding a field: the parent's slots are filled too."""

    extra: str = "x"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a",), {}),
        (("a", 5), {}),
        (("a", 5, {"k": 1}), {}),
        ((), {"name": "a", "tags": {"k": 2}}),
        (("a",), {"level": 0}),
    ],
)
def test_the_same_arguments_make_the_same_record(args: tuple[Any, ...], kwargs: Any) -> None:
    quick, plain = Quick(*args, **kwargs), Plain(*args, **kwargs)
    assert dataclasses.astuple(quick) == dataclasses.astuple(plain)
    assert repr(quick) == repr(plain).replace("Plain", "Quick")


def test_each_default_factory_call_makes_a_new_value() -> None:
    first, second = Quick("a"), Quick("b")
    assert first.tags == {}
    assert second.tags == {}
    assert first.tags is not second.tags


def test_wrong_arguments_fail_as_they_would_without_it() -> None:
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("a", 1, {}, "too many")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("a", nope=1)  # type: ignore[call-arg]
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))


def test_the_record_stays_frozen_hashable_and_copyable() -> None:
    record = Quick("a", 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.level = 4  # type: ignore[misc]
    assert record == Quick("a", 2)
    assert record != Quick("a", 3)
    assert hash(Quick("a", 2, None)) == hash(Quick("a", 2, None))  # type: ignore[arg-type]
    assert dataclasses.replace(record, level=7) == Quick("a", 7)
    assert pickle.loads(pickle.dumps(record)) == record
    assert copy.deepcopy(record) == record


def test_a_subclass_fills_its_parents_fields() -> None:
    child = Child("a", 1, {"k": 0}, "y")
    assert (child.name, child.level, child.tags, child.extra) == ("a", 1, {"k": 0}, "y")
    assert Child("b").extra == "x"


def test_post_init_still_runs() -> None:
    seen: list[str] = []

    @quick_init
    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            seen.append(f"checked {self.value}")

    Checked(4)
    assert seen == ["checked 4"]


def test_classes_it_cannot_serve_are_refused_when_made() -> None:
    with pytest.raises(TypeError, match="not a frozen dataclass with slots"):

        @quick_init
        @dataclass(frozen=True)
        class NoSlots:
            value: int

    with pytest.raises(TypeError, match="not a frozen dataclass with slots"):

        @quick_init
        @dataclass(slots=True)
        class NotFrozen:
            value: int

    with pytest.raises(TypeError, match="keyword-only or not in __init__"):

        @quick_init
        @dataclass(frozen=True, slots=True, kw_only=True)
        class KeywordOnly:
            value: int

    with pytest.raises(TypeError, match="more than its fields"):

        @quick_init
        @dataclass(frozen=True, slots=True)
        class WithInitVar:
            value: int
            seed: InitVar[int]


def test_the_domain_records_use_it() -> None:
    """The records every change makes are built by the quick ``__init__``."""
    assert Device.__init__.__module__ == Device.__module__
    assert "_set0" in Device.__init__.__code__.co_names
    state = PropertyState(value="ON", changed_at=1.0)
    assert state == PropertyState("ON", 1.0)
