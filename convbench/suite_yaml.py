"""Reading a suite's YAML safely: composed once, its node graph walked once and
iteratively (bounded depth and alias expansion, no recursion limit to hit), duplicate
keys found before merges rewrite the mappings, every YAML error located."""

from __future__ import annotations

from typing import Any

import yaml

from convbench.suite_errors import Issue, Loc, SuiteError

#: Bounds on a suite file: what a person writes is far inside them, and past them a
#: file would take minutes or gigabytes to read (a 1 KB "billion laughs" of aliases).
MAX_SUITE_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 200_000  #: values the document holds with every alias expanded


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[str | int, yaml.Node]] = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(name, key), (name, value)]
        return out
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return []


def check_graph(root: yaml.Node) -> Issue | None:
    """The first problem of the composed document's shape, walking each node once
    (iteratively: no recursion limit to hit): nesting deeper than MAX_YAML_DEPTH, an
    alias inside its own anchor (a recursive document), or more than MAX_YAML_VALUES
    values once aliases are expanded."""

    def at(node: yaml.Node, message: str) -> Issue:
        return Issue("", message, node.start_mark.line + 1, node.start_mark.column + 1)

    size: dict[int, int] = {}  # id(node) -> values below it, aliases expanded
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for _, c in _children(node))
            if size[id(node)] > MAX_YAML_VALUES:
                return at(node, f"expands to more than {MAX_YAML_VALUES:,} values (aliases repeated inside aliases)")
            continue
        if id(node) in size:
            continue  # an alias of a node already measured
        if depth > MAX_YAML_DEPTH:
            return at(node, f"nested more than {MAX_YAML_DEPTH} levels deep")
        on_path.add(id(node))
        stack.append((node, depth, True))
        for _, child in _children(node):
            if id(child) in on_path:
                return at(child, "an alias refers to a value that contains it (a recursive document)")
            if id(child) not in size:
                stack.append((child, depth + 1, False))
    return None


def duplicate_keys(root: yaml.Node | None) -> list[tuple[Loc, yaml.Mark, str]]:
    """Keys given twice in one mapping (PyYAML silently keeps the last), each mapping
    looked at once (aliases are not walked again). Keys a merge (``<<``) brings in may
    be overridden: that is what merging is for. Call it before constructing, which
    rewrites merged mappings in place."""
    found: list[tuple[Loc, yaml.Mark, str]] = []
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())] if root is not None else []
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, yaml.Mark] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name != "<<":
                    if name in seen:
                        first = seen[name].line + 1
                        message = f"given twice (also on line {first}); YAML would keep only this one"
                        found.append(((*loc, name), key.start_mark, message))
                    seen.setdefault(name, key.start_mark)
                stack.append((value, (*loc, name if name is not None else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*loc, i)) for i, item in enumerate(node.value)]
    return sorted(found, key=lambda f: (f[1].line, f[1].column))


def yaml_error(file: str, exc: yaml.YAMLError, text: str = "") -> SuiteError:
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: its line, not its offset
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)  # PyYAML gives the code point
        what = f"character U+{code:04X}"
        return SuiteError.from_issues(file, [Issue("", f"invalid YAML: {what} is not allowed in YAML text", line, column)])
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    problem = problem.removeprefix("but ")
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        context += f", line {context_mark.line + 1}"
    text = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    issue = Issue("", text, mark.line + 1, mark.column + 1) if mark else Issue("", text)
    return SuiteError.from_issues(file, [issue])


def parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None, list[tuple[Loc, yaml.Mark, str]]]:
    """(data, composed root, duplicate keys) of ``text``; bounded in depth and size."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise yaml_error(file, exc, text) from None
    except RecursionError:  # PyYAML composes recursively: nesting this deep has no line
        raise SuiteError.from_issues(file, [Issue("", f"invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep")]) from None
    if root is None:
        return None, None, []
    problem = check_graph(root)
    if problem is not None:
        raise SuiteError.from_issues(file, [problem])
    duplicates = duplicate_keys(root)
    try:
        data = yaml.SafeLoader("").construct_document(root)
    except yaml.YAMLError as exc:
        raise yaml_error(file, exc, text) from None
    return data, root, duplicates

