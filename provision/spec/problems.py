"""A problem with a spec, as a person reads it: one line naming the field, what is wrong and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    fix: str = ""
    line: int | None = None

    def render(self, source: str = "") -> str:
        where = f"{source}:{self.line}: " if source and self.line else (f"{source}: " if source else "")
        fix = f"; {self.fix}" if self.fix else ""
        return printable(f"{where}{self.field}: {self.message}{fix}")


def printable(text: str) -> str:
    """One terminal-safe line: newlines, escape sequences and other invisible characters written as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shown(value: Any, limit: int = 60) -> str:
    """A value from the spec as a message shows it: repr, shortened; containers by their type only."""
    if isinstance(value, (dict, list, tuple, set)):
        return type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a {value.bit_length()}-bit number"  # repr() of a huge int is slow, or refused outright
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 5]}...{text[-2:]}"


class SpecError(Exception):
    """The spec is unusable; `problems` says every reason, one line each."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(p.render(source) for p in problems))

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]

