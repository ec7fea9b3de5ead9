"""The packaged JSON Schema (Draft 2020-12) and its errors as our messages.

``bridged/config/schema/bridged.schema.json`` checks types, ranges, enums and unknown keys;
each jsonschema error becomes one :class:`~bridged.config.errors.ConfigIssue` naming the
file, line and column (from the :class:`~bridged.config.document.Document`), in words a
user wrote the file in: "expected a number (seconds), got the string 'x'", "did you mean".
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final, cast

import jsonschema

from bridged.config.document import Document
from bridged.config.errors import ConfigIssue, KeyPath
from bridged.config.model import Endpoint

__all__ = ["load_schema", "schema_issues", "show"]

_format_checker = jsonschema.FormatChecker(formats=())


@_format_checker.checks("bridged-endpoint", raises=ValueError)
def _is_endpoint(instance: object) -> bool:
    if isinstance(instance, str):
        Endpoint.parse(instance)
    return True


def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema (a fresh copy)."""
    text = (
        resources.files("bridged.config").joinpath("schema/bridged.schema.json").read_text("utf-8")
    )
    return cast(dict[str, Any], json.loads(text))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(), format_checker=_format_checker)


_TYPE_NAMES: Final = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def show(value: object) -> str:
    """A value as the user would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 10 rather than 10.0: numbers as the user wrote them
    if isinstance(value, int | float | str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _kind(value: object, written: str | None) -> str:
    """What the user wrote, for "expected X, got Y"."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return show(value)
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        # YAML 1.1 reads 0660 as octal 432: show both so the surprise is visible.
        if written is not None and written != repr(value):
            return f"the number {written} (= {value!r})"
        return f"the number {value!r}"
    return show(value)


def _with_hint(message: str, schema: Mapping[str, Any]) -> str:
    hint = schema.get("x-hint")
    return f"{message} ({hint})" if hint else message


def _did_you_mean(word: object, choices: Sequence[object]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [c for c in choices if isinstance(c, str)], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(error: jsonschema.ValidationError, doc: Document) -> list[tuple[KeyPath, str, bool]]:
    """(key path, message, point at the key rather than the value) for one schema error."""
    path: KeyPath = tuple(error.absolute_path)
    value: Any = error.instance
    rule: Any = error.validator_value  # the keyword's value in the schema
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = error.validator

    if keyword == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        out = []
        for key in value:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f" (allowed here: {', '.join(allowed)})"
                out.append(((*path, key), f"unknown key {show(key)}{hint}", True))
        return out
    if keyword == "required" and isinstance(value, dict):
        return [
            ((*path, key), "required key is missing", False) for key in rule if key not in value
        ]
    if keyword == "type":
        types = rule if isinstance(rule, list) else [rule]
        wanted = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types if t != "null")
        got = _kind(value, doc.scalars.get(path))
        return [(path, f"expected {_with_hint(wanted, schema)}, got {got}", False)]
    if keyword == "enum":
        choices: list[object] = rule
        message = f"{show(value)} is not one of {', '.join(show(c) for c in choices)}"
        return [(path, _with_hint(message, schema) + _did_you_mean(value, choices), False)]
    if keyword in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            message = f"{show(value)} is out of range {show(low)}..{show(high)}"
        elif low is not None:
            message = f"{show(value)} is less than {show(low)}"
        else:
            message = f"{show(value)} is greater than {show(high)}"
        return [(path, _with_hint(message, schema), False)]
    if keyword == "minItems":
        return [(path, _with_hint(f"needs at least {rule} entry", schema), False)]
    if keyword == "maxItems":
        message = f"has {len(value)} entries, at most {rule} allowed"
        return [(path, _with_hint(message, schema), False)]
    if keyword == "minLength":
        return [(path, "must not be empty", False)]
    if keyword == "maxLength":
        message = f"is longer than {rule} characters"
        return [(path, _with_hint(message, schema), False)]
    if keyword == "format":
        return [(path, str(error.cause) if error.cause else error.message, False)]
    if keyword == "pattern":
        form = schema.get("x-hint")
        wanted = f"; expected {form}" if form else f" (pattern {rule})"
        return [(path, f"{show(value)} is not valid{wanted}", False)]
    if keyword in ("oneOf", "anyOf") and schema.get("x-hint"):
        return [(path, f"{show(value)} is not allowed; expected {schema['x-hint']}", False)]
    return [(path, error.message, False)]


def schema_issues(doc: Document) -> list[ConfigIssue]:
    found: dict[KeyPath, tuple[int, ConfigIssue]] = {}
    for error in _validator().iter_errors(doc.data):
        # When a value fails both the editor-facing pattern and our format check, keep the
        # format check's more precise message: one issue per key path.
        rank = 0 if error.validator == "format" else 1
        for path, message, at_key in _describe(error, doc):
            issue = doc.issue(path, message, at_key=at_key)
            if path not in found or rank < found[path][0]:
                found[path] = (rank, issue)
    return [issue for _, issue in found.values()]
