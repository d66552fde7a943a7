"""Verbs beyond init and plan register here (machines, bootstrap, day-2)."""

from typing import Any

REGISTER: list[Any] = []
