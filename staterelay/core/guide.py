"""Guided set-up as data: numbered steps, the values each needs, and whether it is done.

An integration describes its steps once; the dashboard shows them as a page (each value in
its own field with a copy button, a check once the server has seen the step happen) and
the command line prints the same steps and values as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GuideValue:
    """One value to paste somewhere, under the label the other side uses for it."""

    label: str
    value: str
    secret: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class GuideStep:
    """One numbered step: what to do, where, and the values it needs."""

    key: str
    title: str
    text: str
    values: tuple[GuideValue, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    done: bool | None = None
    """True once the server saw it happen, False while it has not; None: nothing to see."""
    done_text: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def guide_text(title: str, steps: list[GuideStep]) -> str:
    """The steps as plain text, for a terminal."""
    lines = [title, ""]
    for number, step in enumerate(steps, start=1):
        mark = "" if step.done is None else "  [done]" if step.done else ""
        lines.append(f"{number}. {step.title}{mark}")
        for paragraph in step.text.split("\n"):
            lines.append(f"   {paragraph}" if paragraph else "")
        width = max((len(value.label) for value in step.values), default=0)
        for value in step.values:
            note = f"  ({value.note})" if value.note else ""
            lines.append(f"     {value.label + ':':<{width + 1}}  {value.value}{note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
