"""Entities from rows the database returned, without validating each one again.

A row read back is trusted data: it was validated when the entity was saved, and its
values have the column's type. ``loader(cls, names)`` makes, once per entity class and row
shape (the row's keys, in order), a function that turns such rows into entities the way
pydantic's ``model_construct`` would, at a fraction of validation's cost:

* each value's type is checked against the field's declared type (an exact type check,
  ``None`` where the field allows it); the values the drivers give as text where the
  field wants a ``datetime``, ``date``, ``time`` or ``UUID`` (SQLite), or as ``0``/``1``
  where it wants a ``bool`` (SQLite, MySQL), are converted by the declared type;
* a row whose values do not pass (another type, text that is no ISO date) is validated by
  pydantic, exactly as before, so what the fast path cannot vouch for is never let in;
* relations get their default (not loaded).

Classes this cannot construct faithfully are validated as before (``loader`` returns
None): a field type other than the plain scalars above, validators, aliases, private
attributes, ``model_post_init``, string transformations in the config, ``extra="allow"``,
annotated metadata other than constraints (which the saved value already met).

The function is generated as Python source (as ``dataclasses`` does for ``__init__``): one
straight block per row, with the fields' names and types bound once.
"""

from __future__ import annotations

import datetime
import types
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import annotated_types
import pydantic

from dbsystem.orm.fields import ColumnOptions, RelationOptions

__all__ = ["loader"]

# Types whose values pydantic keeps as they are when given exactly that type.
_PLAIN: frozenset[type] = frozenset(
    {int, str, float, bool, bytes, Decimal, uuid.UUID, datetime.datetime, datetime.date}
    | {datetime.time}
)
# Constraints a saved value already met (they check, never transform).
_CHECKS = (
    annotated_types.MaxLen,
    annotated_types.MinLen,
    annotated_types.Gt,
    annotated_types.Ge,
    annotated_types.Lt,
    annotated_types.Le,
    annotated_types.MultipleOf,
    ColumnOptions,
    RelationOptions,
)
_SLOTS = vars(pydantic.BaseModel)
_TRANSFORMS = ("str_strip_whitespace", "str_to_lower", "str_to_upper")


_BOOLS = {0: False, 1: True}


def _to_bool(value: int) -> bool | int:
    """0 and 1 as bools; another int unchanged (the type check then sends it to pydantic)."""
    return _BOOLS.get(value, value)


# Conversions by declared type, for what a driver gives back as another type.
_CONVERT: dict[type, tuple[type, Callable[[Any], Any]]] = {
    datetime.datetime: (str, datetime.datetime.fromisoformat),
    datetime.date: (str, datetime.date.fromisoformat),
    datetime.time: (str, datetime.time.fromisoformat),
    uuid.UUID: (str, uuid.UUID),
    bool: (int, _to_bool),
}


def _plain_type(info: pydantic.fields.FieldInfo) -> tuple[type, bool] | None:
    """(the type, whether None is allowed) of a plain scalar field, else None."""
    annotation = info.annotation
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return None
        annotation = args[0]
    if annotation not in _PLAIN:
        return None
    if info.alias is not None or info.validation_alias is not None:
        return None
    if not all(isinstance(m, _CHECKS) for m in info.metadata):
        return None
    return annotation, optional


def _constructible(cls: type[pydantic.BaseModel]) -> bool:
    """True if ``cls`` validates nothing but its fields' types and constraints."""
    decorators = cls.__pydantic_decorators__
    config = cls.model_config
    return not (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
        or cls.__private_attributes__
        or cls.__pydantic_post_init__
        or cls.__pydantic_root_model__
        or config.get("extra") == "allow"
        or any(config.get(name) for name in _TRANSFORMS)
    )


def loader(
    cls: type[pydantic.BaseModel],
    names: tuple[str, ...],
    relations: frozenset[str],
    persisted: type[set[str]],
    validate: Callable[[dict[str, Any]], Any],
) -> Callable[[list[dict[str, Any]]], list[Any]] | None:
    """The function turning rows with keys ``names`` (field names) into ``cls`` entities,
    each marked ``persisted()``; ``validate(row)`` makes the entity of a row that does not
    pass. None when ``cls`` or the shape needs pydantic's validation for every row."""
    if not _constructible(cls):
        return None
    fields = cls.model_fields
    present = set(names)
    columns = [name for name in fields if name not in relations]
    if not present.issuperset(columns):
        return None
    # Rows whose keys are exactly the columns, in order, become the entities' __dict__.
    reuse = not relations and names == tuple(columns)
    env: dict[str, Any] = {
        "_cls": cls,
        "_new": cls.__new__,
        "_set": object.__setattr__,
        # pydantic's slots, set as model_construct does (their descriptors: no lookup)
        "_fields_set": _SLOTS["__pydantic_fields_set__"].__set__,
        "_extra": _SLOTS["__pydantic_extra__"].__set__,
        "_private": _SLOTS["__pydantic_private__"].__set__,
        "_persisted": persisted,
        "_validate": validate,
    }
    lines = []
    checks = []
    values = []
    for i, name in enumerate(fields):
        info = fields[name]
        if name in relations:
            if info.default_factory is not None:
                return None
            env[f"_default{i}"] = info.default  # as validation gives it: not copied
            values.append(f"{name!r}: _default{i}")
            continue
        plain = _plain_type(info)
        if plain is None:
            return None
        kind, optional = plain
        env[f"_t{i}"] = kind
        lines.append(f"        v{i} = row[{name!r}]")
        if kind in _CONVERT:
            given, convert = _CONVERT[kind]
            env[f"_s{i}"], env[f"_c{i}"] = given, convert
            lines.append(f"        if type(v{i}) is _s{i}:")
            lines.append("            try:")
            lines.append(f"                v{i} = _c{i}(v{i})")
            lines.append("            except ValueError:")
            lines.append("                append(_validate(row))")
            lines.append("                continue")
            if reuse:
                lines.append(f"            row[{name!r}] = v{i}")
        test = f"type(v{i}) is _t{i}"
        checks.append(f"(v{i} is None or {test})" if optional else test)
        values.append(f"{name!r}: v{i}")
    state = "row" if reuse else "{" + ", ".join(values) + "}"
    source = "\n".join(
        [
            "def load(rows):",
            "    out = []",
            "    append = out.append",
            "    for row in rows:",
            *lines,
            f"        if {' and '.join(checks) or 'True'}:",
            "            entity = _new(_cls)",
            f"            _set(entity, '__dict__', {state})",
            "            _fields_set(entity, _persisted())",
            "            _extra(entity, None)",
            "            _private(entity, None)",
            "            append(entity)",
            "        else:",
            "            append(_validate(row))",
            "    return out",
        ]
    )
    exec(compile(source, f"<dbsystem loader of {cls.__qualname__}>", "exec"), env)
    load: Callable[[list[dict[str, Any]]], list[Any]] = env["load"]
    return load
