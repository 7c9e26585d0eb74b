"""Problems in a suite file, located: an :class:`Issue` per problem (file, line, column,
field path, what is wrong), :class:`SuiteError` holding them, and the translation of
pydantic validation errors into issues at their YAML location (:class:`Locator`)."""

from __future__ import annotations

import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from convbench.case_filter import did_you_mean

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One problem in a suite file: where (1-based line and column) and what."""

    field: str  #: path of the offending value, e.g. ``workloads[0].params.channels``
    message: str
    line: int | None = None
    column: int | None = None

    def format(self, file: str) -> str:
        where = file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.field + ': ' if self.field else ''}{self.message}"


class SuiteError(Exception):
    """Bad suite input. ``str()`` is one line per problem, ``file:line:col: field: what``."""

    def __init__(self, message: str, issues: Sequence[Issue] = (), file: str | None = None):
        super().__init__(message)
        self.issues = list(issues)
        self.file = file

    @classmethod
    def from_issues(cls, file: str, issues: Iterable[Issue]) -> SuiteError:
        unique = list(dict.fromkeys(issues))
        unique.sort(key=lambda i: (i.line is None, i.line or 0, i.column or 0))
        return cls("\n".join(i.format(file) for i in unique), unique, file)


class FilterError(SuiteError):
    """A ``--filter`` expression that cannot be evaluated as a condition over the cases."""


def unknown_value(what: str, value: object, known: Iterable[str]) -> str:
    known = list(known)
    return f"unknown {what} {show_value(value)}{did_you_mean(value, known)} (known: {', '.join(known) or 'none'})"


def format_loc(loc: Loc) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


class Locator:
    """Maps a validation location (a pydantic ``loc``) to a field path and a YAML mark."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def locate(self, loc: Loc, kind: str = "") -> tuple[str, yaml.Mark | None]:
        node = self.root
        mark = node.start_mark if node is not None else None
        path: list[str | int] = []
        for i, step in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, yaml.MappingNode):
                pair = next(
                    (
                        (k, v)
                        for k, v in node.value
                        if isinstance(k, yaml.ScalarNode) and k.value == str(step)
                    ),
                    None,
                )
                if pair is not None:
                    key, node = pair
                    path.append(str(step))
                    on_key = (
                        (last and kind == "extra_forbidden")
                        or loc[i + 1 : i + 2] == ("[key]",)
                        or node.start_mark.line != key.start_mark.line
                    )
                    mark = key.start_mark if on_key else node.start_mark
                    continue
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(step, int)
                and 0 <= step < len(node.value)
            ):
                node = node.value[step]
                path.append(step)
                mark = node.start_mark
                continue
            # Not in the YAML: a list index the validator added to a scalar or mapping, a
            # union tag, or a missing field (the only step worth naming).
            if last and kind == "missing":
                path.append(step)
        return format_loc(tuple(path)), mark

    def issue(self, loc: Loc, message: str, kind: str = "") -> Issue:
        path, mark = self.locate(loc, kind)
        if mark is None:
            return Issue(path, message)
        return Issue(path, message, mark.line + 1, mark.column + 1)


def show_value(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in YAML, shortened."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional from a type annotation."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        args = [a for a in get_args(tp) if a is not type(None)]
        if get_origin(tp) in (Union, types.UnionType) and len(args) == 1:
            tp = args[0]
            continue
        return tp


def _type_at(model: Any, loc: Loc) -> Any:
    """The annotation at ``loc`` inside ``model`` (best effort; None when unknown)."""
    tp: Any = model
    for step in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(step, str) or step not in tp.model_fields:
                return None
            tp = tp.model_fields[step].annotation
        elif get_origin(tp) in (list, tuple, set) and isinstance(step, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _noun(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if get_origin(tp) in (list, tuple):
        return "a list"
    if get_origin(tp) is dict or (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return "a mapping"
    return "a value"


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def validation_message(err: dict[str, Any], model: Any) -> str:
    """What a pydantic error means, in the suite's terms."""
    kind, ctx, loc = err["type"], err.get("ctx") or {}, tuple(err["loc"])
    value = err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        parent = _type_at(model, loc[:-1])
        is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
        allowed = list(parent.model_fields) if is_model else []
        hint = did_you_mean(loc[-1], allowed) + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        return f"unknown field {loc[-1]!r}{hint}"
    if kind == "invalid_key":
        return f"expected a string key, got {show_value(value)}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        bound = ctx.get(key)
        bound = f"{bound:g}" if isinstance(bound, float) else bound
        expected = f"{_noun(_type_at(model, loc))} {op} {bound}"
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind]
    elif kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "one of the allowed values")
    elif kind == "string_pattern_mismatch":
        expected = f"a string matching {ctx.get('pattern')}"
    elif kind == "string_too_short":
        expected = "a non-empty string"
    elif kind == "too_short":
        n = ctx.get("min_length", 1)
        expected = "a non-empty list" if n == 1 else f"a list of at least {n} items"
    elif kind == "too_long":
        expected = f"a list of at most {ctx.get('max_length')} items"
    else:
        return f"{err['msg']}, got {show_value(value)}"
    return f"expected {expected}, got {show_value(value)}"


def validation_issues(exc: ValidationError, model: Any, prefix: Loc, locator: Locator) -> list[Issue]:
    """One issue per offending field (the first error of a union is kept)."""
    issues: dict[str, Issue] = {}
    for err in exc.errors(include_url=False):
        issue = locator.issue((*prefix, *err["loc"]), validation_message(err, model), err["type"])
        issues.setdefault(issue.field, issue)
    return list(issues.values())

