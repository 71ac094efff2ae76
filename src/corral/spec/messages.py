"""Plain-word messages for spec validation errors, in place of pydantic's own wording.

`describe_error` turns one pydantic error (its type, input and context) into what a user
reads after `corral.toml:LINE:COL: key.path:`: what was expected, what was given, and for a
misspelled key the closest key that exists there. Pure: no file is read.
"""

from __future__ import annotations

from typing import Any

from corral.spec.locate import did_you_mean

_EXPECTED = {
    "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": 'a string in quotes, such as "x"',
    "list_type": 'a list, such as ["a", "b"]', "tuple_type": 'a list, such as ["a", "b"]',
    "dict_type": "a table, such as { key = \"value\" }",
    "model_type": "a table, such as { key = \"value\" }",
    "model_attributes_type": "a table, such as { key = \"value\" }",
}
_BOUNDS = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
           "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}


def describe_error(error: Any, path: tuple[str, ...]) -> str:
    """What is wrong with the value at `path`, in corral's words.

    >>> describe_error({"type": "int_parsing", "input": "three", "msg": "", "ctx": {}},
    ...                ("services", "web", "replicas"))
    "must be a whole number, not 'three'"
    >>> describe_error({"type": "less_than_equal", "input": 99999, "msg": "",
    ...                 "ctx": {"le": 65535}}, ("services", "web", "port"))
    'must be at most 65535, not 99999'
    """
    kind, given, context = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown key; {did_you_mean(path[-1], known_keys(path[:-1]))}"
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {_show(given)}"
    if kind in _BOUNDS:
        words, bound = _BOUNDS[kind]
        return f"must be {words} {context.get(bound)}, not {_show(given)}"
    if kind == "literal_error":
        hint = did_you_mean(str(given), _choices(str(context.get("expected", ""))))
        return f"must be one of {context.get('expected')}, not {_show(given)}; {hint}"
    if kind == "string_pattern_mismatch":
        return f"{_show(given)} does not have the form {context.get('pattern')}"
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return f"{_show(given)} is too {'short' if 'short' in kind else 'long'}"
    return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def known_keys(path: tuple[str, ...]) -> list[str]:
    """The keys the spec allows inside the table at `path` (empty if it is not a table).

    >>> "replicas" in known_keys(("services", "web"))
    True
    """
    from corral.spec.model import Spec

    model: Any = Spec
    for part in path:
        model = _inner(model, part)
        if model is None:
            return []
    fields = getattr(model, "model_fields", None)
    if not isinstance(fields, dict):
        return []
    return [field.alias or name for name, field in fields.items()]


def _inner(model: Any, part: str) -> Any:
    """The type found at key `part` inside `model` (a model, dict[str, X] or list[X])."""
    fields = getattr(model, "model_fields", None)
    if isinstance(fields, dict):
        for name, field in fields.items():
            if part in (name, field.alias):
                return _table_type(field.annotation)
        return None
    items = [a for a in getattr(model, "__args__", ()) if a is not Ellipsis]
    return _table_type(items[-1]) if items else None  # dict[str, X] and tuple[X, ...]: X


def _table_type(annotation: Any) -> Any:
    """The model, dict or list type in an annotation (`X | None` gives X)."""
    if hasattr(annotation, "model_fields"):
        return annotation
    origin = getattr(annotation, "__origin__", None)
    if origin in (dict, list, tuple):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _table_type(arg)
        if found is not None:
            return found
    return None


def _choices(expected: str) -> list[str]:
    return [part.strip(" '\"") for part in expected.replace(" or ", ",").split(",") if part]


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, dict | list) else "a " + (
        "table" if isinstance(value, dict) else "list")
