"""YAML with line tracking: the document as data, and where every key and value sits.

A custom SafeLoader remembers the YAML nodes behind every mapping entry and list item, so
later phases (schema, semantics) can name ``file:line:column``. Syntax errors, control
characters, duplicate keys, recursive aliases and NaNs are reported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from bridged.config.errors import ConfigIssue, KeyPath, format_key_path

__all__ = ["Document", "Where", "parse_yaml"]


@dataclass(frozen=True, slots=True)
class Where:
    line: int  # 1-based
    column: int  # 1-based


def _where(mark: yaml.Mark) -> Where:
    return Where(mark.line + 1, mark.column + 1)


class _MarkingLoader(yaml.SafeLoader):
    """SafeLoader that remembers the YAML nodes behind every mapping entry and list item.

    Keyed by id() of the constructed container; the container itself is kept in the tuple
    so its id cannot be reused while we still need the index.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.map_entries: dict[int, tuple[dict[Any, Any], dict[Any, tuple[Any, Any]]]] = {}
        self.map_duplicates: dict[int, list[tuple[Any, yaml.Node, yaml.Node]]] = {}
        self.seq_items: dict[int, tuple[list[Any], list[yaml.Node]]] = {}

    def construct_marked_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        # Before construct_mapping flattens merge keys into node.value: a plain repeated key
        # is a mistake (PyYAML would silently keep the last one).
        first_seen: dict[tuple[str, str], yaml.Node] = {}
        repeated: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in first_seen:
                    repeated.append((first_seen[ident], key_node))
                else:
                    first_seen[ident] = key_node
        data.update(self.construct_mapping(node))
        entries: dict[Any, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:  # flattened now; later entries win, as in data
            entries[self.construct_object(key_node)] = (key_node, value_node)
        self.map_entries[id(data)] = (data, entries)
        if repeated:
            self.map_duplicates[id(data)] = [
                (self.construct_object(second), first, second) for first, second in repeated
            ]

    def construct_marked_seq(self, node: yaml.SequenceNode) -> Iterator[list[Any]]:
        data: list[Any] = []
        yield data
        data.extend(self.construct_sequence(node))
        self.seq_items[id(data)] = (data, list(node.value))


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _MarkingLoader.construct_marked_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _MarkingLoader.construct_marked_seq)


@dataclass(slots=True)
class Document:
    """Parsed YAML plus where each key path sits in the file."""

    source: str
    data: Any = None
    values: dict[KeyPath, Where] = field(default_factory=dict)  # where each value starts
    scalars: dict[KeyPath, str] = field(default_factory=dict)  # scalar values as written
    keys: dict[KeyPath, Where] = field(default_factory=dict)  # where each mapping key is

    def issue(self, path: KeyPath, message: str, *, at_key: bool = False) -> ConfigIssue:
        where = self.locate(path, at_key=at_key)
        return ConfigIssue(self.source, where.line, where.column, format_key_path(path), message)

    def locate(self, path: KeyPath, *, at_key: bool = False) -> Where:
        if at_key and path in self.keys:
            return self.keys[path]
        # Missing keys and built-in defaults have no node: fall back to the nearest ancestor.
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return Where(1, 1)

    def has(self, path: KeyPath) -> bool:
        return path in self.values

    def ssl_origin(self, index: int, name: str) -> KeyPath | None:
        """Where socket index's effective ssl.<name> was written (its own ssl section,
        else the ssl defaults); None for the built-in default."""
        for path in (("sockets", index, "ssl", name), ("ssl", name)):
            if self.has(path):
                return path
        return None


def parse_yaml(text: str, source: str) -> tuple[Document, list[ConfigIssue], bool]:
    """The document, issues found, and whether they are fatal (nothing left to validate)."""
    doc = Document(source)
    try:
        loader = _MarkingLoader(text)
    except yaml.reader.ReaderError as exc:  # e.g. a control character in the text
        return doc, [_reader_issue(exc, text, source)], True
    try:
        root = loader.get_single_node()
        if root is None:
            empty = "the file is empty; it needs at least 'serial' and 'sockets'"
            return doc, [ConfigIssue(source, 0, 0, "", empty)], True
        doc.data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        return doc, [_syntax_issue(exc, source)], True
    except yaml.reader.ReaderError as exc:
        return doc, [_reader_issue(exc, text, source)], True
    finally:
        loader.dispose()

    issues: list[ConfigIssue] = []
    recursive = False
    doc.values[()] = _where(root.start_mark)

    def walk(obj: Any, path: KeyPath, active: frozenset[int]) -> None:
        nonlocal recursive
        if id(obj) in active:  # a recursive alias (&a [*a]) would make the validator loop
            issues.append(doc.issue(path, "recursive YAML alias is not allowed"))
            recursive = True
            return
        inner = active | {id(obj)}
        entry = loader.map_entries.get(id(obj))
        if isinstance(obj, dict) and entry is not None and entry[0] is obj:
            for key, (key_node, value_node) in entry[1].items():
                doc.keys[(*path, key)] = _where(key_node.start_mark)
                doc.values[(*path, key)] = _where(value_node.start_mark)
                if isinstance(value_node, yaml.ScalarNode):
                    doc.scalars[(*path, key)] = value_node.value
            for key, first, second in loader.map_duplicates.get(id(obj), ()):
                where = _where(second.start_mark)
                issues.append(
                    ConfigIssue(
                        source,
                        where.line,
                        where.column,
                        format_key_path((*path, key)),
                        f"duplicate key (first given on line {first.start_mark.line + 1})",
                    )
                )
            for key in entry[1]:
                walk(obj[key], (*path, key), inner)
            return
        seq = loader.seq_items.get(id(obj))
        if isinstance(obj, list) and seq is not None and seq[0] is obj:
            for index, item_node in enumerate(seq[1]):
                doc.values[(*path, index)] = _where(item_node.start_mark)
            for index, item in enumerate(obj):
                walk(item, (*path, index), inner)
            return
        if isinstance(obj, float) and math.isnan(obj):  # NaN slips through min/max checks
            issues.append(doc.issue(path, "NaN is not allowed here"))

    walk(doc.data, (), frozenset())
    return doc, issues, recursive


def _syntax_issue(exc: yaml.MarkedYAMLError, source: str) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    where = _where(mark) if mark is not None else Where(0, 0)
    message = f"YAML syntax: {exc.problem or exc.context}"
    if exc.problem and exc.context:
        message += f" ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return ConfigIssue(source, where.line, where.column, "", message)


def _reader_issue(exc: yaml.reader.ReaderError, text: str, source: str) -> ConfigIssue:
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    message = f"YAML syntax: control character 0x{code:02X} is not allowed"
    return ConfigIssue(source, line, column, "", message)
