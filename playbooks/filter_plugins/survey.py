"""Split the survey's one round trip into each role's probe result (playbooks/survey.yml)."""

from __future__ import annotations

from typing import Any

BEGIN = "### survey "
END = "### survey-rc "


def survey_sections(stdout: str) -> dict[str, dict[str, Any]]:
    """`### survey NAME` ... `### survey-rc N` blocks -> {NAME: {stdout, stdout_lines, rc}}, as `register` of the
    role's own probe would have it. A block cut short (no rc line) is left out: its role then judges nothing."""
    out: dict[str, dict[str, Any]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(BEGIN):
            name, lines = line[len(BEGIN):].strip(), []
        elif line.startswith(END) and name is not None:
            text = "\n".join(lines)
            out[name] = {"stdout": text, "stdout_lines": lines, "rc": int(line[len(END):].strip() or 1)}
            name = None
        elif name is not None:
            lines.append(line)
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"survey_sections": survey_sections}
