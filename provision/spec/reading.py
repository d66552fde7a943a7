"""Reading a spec file: YAML with the line of every key, the schema's errors in the spec's own words, then the rules.

`load_spec(path)` returns a resolved `Cluster` or raises `SpecError` with every problem found: schema errors
(types, unknown keys) and the rules of every section those errors leave judgeable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from provision.spec.cluster import Cluster
from provision.spec.models import API_VERSION, ClusterSpec
from provision.spec.presets import apply_preset
from provision.spec.problems import Problem, SpecError, shown
from provision.spec.rules import check

Loc = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a value it cannot build (a date like 2024-13-01, an integer of
    thousands of digits) is a YAML error with its line instead of a stray ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            what = str(exc).split(";")[0].strip()
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({what})",
                                                    node.start_mark) from None


def _scan(text: str) -> tuple[dict[Loc, int], list[tuple[Loc, int]]]:
    """Map each key path of the YAML document to its 1-based line; list keys written twice in one mapping."""
    index: dict[Loc, int] = {}
    twice: list[tuple[Loc, int]] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return index, twice
    todo: list[tuple[yaml.Node, Loc]] = [(root, ())] if root is not None else []
    walked: set[int] = set()  # an alias shares its anchor's node: walk it once (no endless or exponential walk)
    while todo:
        node, path = todo.pop()
        index.setdefault(path, node.start_mark.line + 1)
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            children: list[tuple[yaml.Node, Loc]] = []
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue  # a list or mapping as a key: the loader has refused the document already
                sub = (*path, key.value)
                if (key.tag, key.value) in keys and key.tag != "tag:yaml.org,2002:merge":
                    twice.append((sub, key.start_mark.line + 1))
                keys.add((key.tag, key.value))
                index[sub] = key.start_mark.line + 1
                children.append((value, sub))
            todo.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(reversed([(item, (*path, i)) for i, item in enumerate(node.value)]))
    return index, twice


def _line_index(text: str) -> dict[Loc, int]:
    """Map each key path of the YAML document to its 1-based line."""
    return _scan(text)[0]


def _odd_key(raw: Any) -> tuple[Loc, Any] | None:
    """The first mapping key anywhere in the document that is not text (YAML allows 1:, null:, true:)."""
    todo: list[tuple[Any, Loc]] = [(raw, ())]
    walked: set[int] = set()
    while todo:
        node, path = todo.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    return path, key
                todo.append((value, (*path, key)))
        elif isinstance(node, list):
            todo.extend((item, (*path, i)) for i, item in enumerate(node))
    return None


def _line_for(index: dict[Loc, int], loc: tuple[str | int, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in index:
            return index[loc[:n]]
    return None


def field_name(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (part if _PLAIN_KEY.match(part) else shown(part))
    return out or "(document)"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z")


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    model: Any = ClusterSpec
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        ann = fields[part].annotation
        nested = _nested_model(ann)
        if nested is None:
            return None
        model = nested
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _nested_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


_TYPE_WORDS = {
    "string_type": ("expected text", "quote the value"),
    "int_type": ("expected a whole number", "write a number without quotes"),
    "bool_type": ("expected true or false", "write true or false without quotes"),
    "list_type": ("expected a list", "write a YAML list (lines starting with '- ')"),
    "model_type": ("expected a mapping of keys to values", "indent 'key: value' lines under it"),
    "dict_type": ("expected a mapping of keys to values", "indent 'key: value' lines under it"),
}


def _translate(err: Any, index: dict[Loc, int]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    field = field_name(loc)
    line = _line_for(index, loc)
    value = err.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = _allowed_keys(parent) if parent else "see `provision init`"
        return Problem(field, "unknown key", f"allowed here: {allowed}", line)
    if kind == "missing":
        return Problem(field, "required but missing", f"add '{loc[-1]}:' (see `provision init` for an example)", line)
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return Problem(field, f"{shown(value)} is not allowed", f"use one of: {expected}", line)
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return Problem(field, f"{shown(value)} is out of range ({err['msg'].lower()})", "change the number", line)
    if kind == "too_short":
        return Problem(field, "must not be empty", "list at least one entry", line)
    if kind in _TYPE_WORDS:
        what, fix = _TYPE_WORDS[kind]
        if kind == "string_type" and isinstance(value, float) and loc[-1] == "version":
            fix = f'quote it: "{value}" (YAML reads an unquoted 1.30 as the number 1.3)'
        return Problem(field, f"{what}, got {shown(value)}", fix, line)
    return Problem(field, err["msg"], "see `provision init` for a valid example", line)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = (exc.problem or "malformed YAML").strip()
        raise SpecError([Problem("(document)", f"malformed YAML: {what}", "fix the syntax on that line", line)],
                        source) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError([Problem("(document)", f"malformed YAML: the character U+{code:04X} is not allowed",
                                 "remove it, or write it as an escape inside double quotes", line)],
                        source) from None
    except yaml.YAMLError as exc:
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise SpecError([Problem("(document)", f"malformed YAML: {what}", "fix the syntax")], source) from None
    except RecursionError:
        raise SpecError([Problem("(document)", "nested too deeply to read",
                                 "a spec is a few levels deep: remove the extra brackets or indentation")],
                        source) from None
    if raw is None:
        raise SpecError([Problem("(document)", "the file is empty", "run `provision init` for a starting spec")],
                        source)
    if not isinstance(raw, dict):
        raise SpecError([Problem("(document)", f"expected a mapping at the top, got {type(raw).__name__}",
                                 "start with 'apiVersion: provision.dev/v1alpha1' and 'kind: Cluster'", 1)], source)
    odd = _odd_key(raw)
    if odd is not None:
        path, key = odd
        where = field_name(path)
        field = f"{where}.{shown(key)}" if path else shown(key)
        raise SpecError([Problem(field, "keys must be text", "quote the key",
                                 _line_for(_line_index(text), (*path, str(key))))], source)
    return raw


def load_spec(path: str | Path) -> Cluster:
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("(file)", "does not exist",
                                 "pass the spec with -f, or create one with `provision init`")], source) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fix = "save it as UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "check the path and its permissions"
        raise SpecError([Problem("(file)", f"cannot read it: {reason}", fix)], source) from None
    return load_text(text, source, base_dir=path.parent)


def load_text(text: str, source: str = "<spec>", base_dir: Path | None = None) -> Cluster:
    raw = parse_yaml(text, source)
    index, twice = _scan(text)
    if twice:
        raise SpecError([Problem(field_name(loc), "written twice in one mapping (YAML would keep only the last)",
                                 "keep one of them", line) for loc, line in twice], source)
    merged = apply_preset(raw)
    try:
        spec = ClusterSpec.model_validate(merged)
    except ValidationError as exc:
        errors = exc.errors()
        problems = _dedupe([_translate(e, index) for e in errors]) + _judge_what_remains(merged, errors)
        raise SpecError(_with_lines(problems, index), source) from None
    problems = check(spec)
    if problems:
        raise SpecError(_with_lines(problems, index), source)
    return Cluster(spec=spec, base_dir=base_dir or Path.cwd(), source=source)


# Sections the topology's preset fills in: with the topology itself unreadable, they are not what was meant.
_PRESET_FILLED = ("nodes", "etcd", "endpoint")
# Stand-ins for required top-level keys that failed the schema; the rules reading them are skipped.
_STAND_INS = {"apiVersion": API_VERSION, "kind": "Cluster", "name": "unjudged", "topology": "all-in-one"}


def _judge_what_remains(merged: dict[str, Any], errors: list[Any]) -> list[Problem]:
    """The rule problems of the sections the schema accepted: the broken sections are set aside (their
    defaults or stand-ins take their place) and the rules reading any of them are not run."""
    if any(not e["loc"] for e in errors):
        return []  # the document as a whole is wrong
    broken = {str(e["loc"][0]) for e in errors}
    if "topology" in broken:
        broken.update(_PRESET_FILLED)
    kept = {k: v for k, v in merged.items() if k not in broken}
    kept.update({k: v for k, v in _STAND_INS.items() if k in broken})
    try:
        spec = ClusterSpec.model_validate(kept)
    except ValidationError:
        return []
    return check(spec, skip=broken)


def _with_lines(problems: list[Problem], index: dict[Loc, int]) -> list[Problem]:
    return [p if p.line else Problem(p.field, p.message, p.fix, _line_for(index, _loc_of(p.field)))
            for p in problems]


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    out = []
    for p in problems:
        if p.field not in seen:
            seen.add(p.field)
            out.append(p)
    return out


def _loc_of(field: str) -> tuple[str | int, ...]:
    loc: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(loc)

