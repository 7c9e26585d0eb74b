"""``--filter`` expressions: a small language of conditions over a case's keys.

A filter is parsed by this module's own grammar and evaluated on plain values; nothing
in it is ever handed to Python, pandas or numpy to evaluate, so a filter (or a placement
query stored in a run folder) cannot run code. The grammar::

    expr       := or
    or         := and (("or" | "|") and)*
    and        := not (("and" | "&") not)*
    not        := ("not" | "~") not | atom
    atom       := "(" expr ")" | condition
    condition  := NAME OP value                     # batch >= 8, mode == 'training'
                | NAME ["not"] "in" "[" value ("," value)* [","] "]"
                | NAME ".str." ("startswith" | "endswith" | "contains") "(" STRING ")"
                | NAME "." ("isna" | "notna") "(" ")"
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">="
    value      := STRING | NUMBER | "True" | "False" | "None"

NAME is one of the columns the caller allows (for cases: :data:`convbench.suite.FILTER_COLUMNS`);
STRING is single- or double-quoted (backslash escapes the quote); NUMBER an integer or
a decimal. ``None`` (or ``isna()``) matches a missing value: ``threads == None`` is the
cases that use every core. Comparing a missing value with ``<``, ``>`` or with a number
is false; comparing a string with a number by order is an error.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FilterSyntaxError", "Predicate", "compile_filter", "did_you_mean"]

Predicate = Callable[[Mapping[str, Any]], bool]

#: Longest filter accepted (characters): a filter is a line typed by a person.
MAX_LENGTH = 10_000
#: Deepest nesting of parentheses and ``not``.
MAX_DEPTH = 50

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|&|\||~|\.)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "startswith": str.startswith, "endswith": str.endswith, "contains": lambda s, part: part in s,
}  # fmt: skip
_LITERALS = {"True": True, "False": False, "None": None}


class FilterSyntaxError(ValueError):
    """A filter that is not a sentence of the grammar (the message says where and why)."""


@dataclass(frozen=True)
class _Token:
    kind: str  #: string, number, op, name, end
    text: str
    at: int  #: character offset in the filter


def _tokens(text: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            at = len(text) - len(text[pos:].lstrip())
            hint = " (use '==' to compare)" if text[at] == "=" else ""
            raise FilterSyntaxError(f"unexpected character {text[at]!r} at position {at + 1}{hint}")
        kind = m.lastgroup or "op"
        out.append(_Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    out.append(_Token("end", "", len(text)))
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN


def _compare(op: str, left: Any, right: Any) -> bool:
    if _missing(left) or _missing(right):
        both = _missing(left) and _missing(right)
        return {"==": both, "!=": not both}.get(op, False)
    numbers = (int, float)
    if isinstance(left, numbers) != isinstance(right, numbers) or isinstance(left, bool) != isinstance(right, bool):
        if op in ("==", "!="):
            return op == "!="
        raise FilterSyntaxError(f"cannot order {left!r} and {right!r} (a string and a number)")
    return bool(_COMPARE[op](left, right))


class _Parser:
    def __init__(self, text: str, columns: Sequence[str]) -> None:
        self.text, self.columns = text, tuple(columns)
        self.tokens = _tokens(text)
        self.i = 0
        self.depth = 0

    # -- token helpers
    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, expected: str) -> FilterSyntaxError:
        token = self.peek
        got = "the end" if token.kind == "end" else repr(token.text)
        return FilterSyntaxError(f"expected {expected} at position {token.at + 1}, got {got}")

    def expect(self, text: str) -> None:
        if self.peek.text != text or self.peek.kind in ("string", "end"):
            raise self.fail(repr(text))
        self.take()

    def word(self, *words: str) -> bool:
        return self.peek.kind == "name" and self.peek.text in words

    # -- grammar
    def parse(self) -> Predicate:
        pred = self.or_()
        if self.peek.kind != "end":
            raise self.fail("'and', 'or' or the end of the filter")
        return pred

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.word("or") or self.peek.text == "|":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda row, ps=tuple(parts): any(p(row) for p in ps))

    def and_(self) -> Predicate:
        parts = [self.not_()]
        while self.word("and") or self.peek.text == "&":
            self.take()
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else (lambda row, ps=tuple(parts): all(p(row) for p in ps))

    def nested(self, parse: Callable[[], Predicate]) -> Predicate:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(f"nested more than {MAX_DEPTH} deep")
        try:
            return parse()
        finally:
            self.depth -= 1

    def not_(self) -> Predicate:
        if self.word("not") or self.peek.text == "~":
            self.take()
            inner = self.nested(self.not_)
            return lambda row: not inner(row)
        return self.atom()

    def atom(self) -> Predicate:
        if self.peek.text == "(" and self.peek.kind == "op":
            self.take()
            inner = self.nested(self.or_)
            self.expect(")")
            return inner
        return self.condition()

    def column(self) -> str:
        token = self.peek
        if token.kind != "name" or token.text in ("and", "or", "not", "in", *_LITERALS):
            raise self.fail(f"a column ({', '.join(self.columns)})")
        if token.text not in self.columns:
            raise FilterSyntaxError(f"unknown column {token.text!r} at position {token.at + 1}{did_you_mean(token.text, self.columns)}")
        self.take()
        return token.text

    def value(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        if token.kind == "name" and token.text in _LITERALS:
            return _LITERALS[token.text]
        self.i -= 1
        raise self.fail("a value (a quoted string, a number, True, False or None)")

    def condition(self) -> Predicate:
        name = self.column()
        token = self.peek
        if token.kind == "op" and token.text in _COMPARE:
            op = self.take().text
            value = self.value()
            return lambda row: _compare(op, row.get(name), value)
        if self.word("not", "in"):
            negate = self.take().text == "not"
            if negate:
                if not self.word("in"):
                    raise self.fail("'in' after 'not'")
                self.take()
            values = self.list_()
            return lambda row: any(_compare("==", row.get(name), v) for v in values) != negate
        if token.text == ".":
            return self.method(name)
        raise self.fail("a comparison (==, !=, <, <=, >, >=), 'in' or 'not in'")

    def list_(self) -> tuple[Any, ...]:
        close = {"[": "]", "(": ")"}.get(self.peek.text)
        if close is None or self.peek.kind != "op":
            raise self.fail("a list like ['a', 'b']")
        self.take()
        values = []
        while self.peek.text != close or self.peek.kind == "string":
            values.append(self.value())
            if self.peek.text == "," and self.peek.kind == "op":
                self.take()
            elif self.peek.text != close:
                raise self.fail(f"',' or {close!r}")
        self.take()
        return tuple(values)

    def method(self, name: str) -> Predicate:
        self.expect(".")
        if self.word("str"):
            self.take()
            self.expect(".")
            if not self.word(*_STRING_TESTS):
                raise self.fail(f"one of {', '.join(_STRING_TESTS)}")
            test = _STRING_TESTS[self.take().text]
            self.expect("(")
            if self.peek.kind != "string":
                raise self.fail("a quoted string")
            part = _unquote(self.take().text)
            self.expect(")")
            return lambda row: isinstance(row.get(name), str) and test(row[name], part)
        if self.word("isna", "notna"):
            want_missing = self.take().text == "isna"
            self.expect("(")
            self.expect(")")
            return lambda row: _missing(row.get(name)) == want_missing
        raise self.fail("str.startswith/endswith/contains(...), isna() or notna()")


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def compile_filter(text: str, columns: Sequence[str]) -> Predicate:
    """The predicate of the filter ``text`` over rows with ``columns`` (a mapping per
    row); :class:`FilterSyntaxError` when ``text`` is not in the grammar. Parsing
    finishes before anything is evaluated."""
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(f"longer than {MAX_LENGTH:,} characters")
    return _Parser(text, columns).parse()
