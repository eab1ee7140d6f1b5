"""``quick_init``: a faster ``__init__`` for a frozen, slotted dataclass.

A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__(self, name,
value)``: a name lookup through the class for every field, about three times the cost
of a plain assignment. A state change makes a dozen records (the device, its activity
row, outbox events, the delivery plan, the bus event), so on the busiest paths that alone
was about a tenth of the server's time per change.

``quick_init`` keeps the class exactly as ``dataclass(frozen=True, slots=True)`` made it
(equality, hashing, ``repr``, ``replace``, pickling, and no assignment after
construction) and swaps only its ``__init__`` for one with the same parameters that fills
each slot through the slot's own descriptor, found once, when the class is made::

    @quick_init
    @dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 0

Fields may have defaults and default factories and the class a ``__post_init__``; a
field left out of ``__init__``, a keyword-only field or an ``InitVar`` is refused (a
``TypeError`` when the class is made), as is a class without slots or not frozen.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, TypeVar

_C = TypeVar("_C", bound=type[Any])


class _Factory:
    """The default of a parameter whose field has a default factory (as in a signature)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def quick_init(cls: _C) -> _C:
    """Give the frozen, slotted dataclass ``cls`` the quick ``__init__``; returns ``cls``."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__qualname__} is not a frozen dataclass with slots")
    scope: dict[str, Any] = {"_FACTORY": _FACTORY}
    parameters: list[str] = []
    lines: list[str] = []
    for number, field in enumerate(dataclasses.fields(cls)):
        if not field.init or field.kw_only:
            raise TypeError(
                f"{cls.__qualname__}.{field.name} is keyword-only or not in __init__: "
                "keep the generated __init__"
            )
        slot = getattr(cls, field.name, None)
        if not isinstance(slot, types.MemberDescriptorType):
            raise TypeError(f"{cls.__qualname__}.{field.name} is not a slot")
        name = field.name
        scope[f"_set{number}"] = slot.__set__
        if field.default is not dataclasses.MISSING:
            scope[f"_default{number}"] = field.default
            parameters.append(f"{name}=_default{number}")
        elif field.default_factory is not dataclasses.MISSING:
            scope[f"_factory{number}"] = field.default_factory
            parameters.append(f"{name}=_FACTORY")
            lines.append(f"    if {name} is _FACTORY:\n        {name} = _factory{number}()")
        else:
            parameters.append(name)
        lines.append(f"    _set{number}(self, {name})")
    generated = list(inspect.signature(cls.__init__).parameters)[1:]
    if generated != [field.name for field in dataclasses.fields(cls)]:  # an InitVar, say
        raise TypeError(f"{cls.__qualname__}.__init__ takes more than its fields")
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(parameters)}):\n" + "\n".join(lines or ["    pass"])
    exec(source, scope)  # our own text, made of the class's field names
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)  # the signature reads the same
    cls.__init__ = init
    return cls
