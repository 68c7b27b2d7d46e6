"""What a MongoDB operation touches, for access control and audit: each collection with
the action taken on it, and what no grant allows (an operator or stage not known here).

- reads (``find``, ``count``, ``distinct``, ``aggregate``): SELECT on the collection;
- ``insert_*``: INSERT; ``update_*``/``replace_one``: UPDATE, and INSERT too with
  ``upsert`` (it may insert); ``delete_*``: DELETE; ``bulk_write``: each request as the
  single operation it is;
- aggregation stages that read other collections (``$lookup``, ``$graphLookup``,
  ``$unionWith``, nested pipelines and ``$facet`` included): SELECT on each; ``$out``:
  INSERT, UPDATE and DELETE on its target (it replaces the collection), ``$merge``: INSERT
  and UPDATE on its target; a target in another database: the same on ``"*"``;
- filters: query operators on an allow-list; aggregation stages on an allow-list;
  anything else is ``("refused", "mongodb operator $x")`` for a user session. Server-side
  JavaScript (``$where``, ``$function``, ``$accumulator``) is refused by the builder
  already, for everyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["operation_accesses", "pipeline_accesses"]

REFUSED = "refused"

# Query operators a filter may use (field level and top level).
_FIELD_OPERATORS = frozenset(
    "$eq $ne $gt $gte $lt $lte $in $nin $exists $type $regex $options $not $elemMatch $size "
    "$all $mod $bitsAllClear $bitsAllSet $bitsAnyClear $bitsAnySet $geoWithin $geoIntersects "
    "$near $nearSphere $maxDistance $minDistance".split()
)
_TOP_OPERATORS = frozenset("$and $or $nor $expr $text $comment $jsonSchema".split())
# Aggregation stages a pipeline may hold.
_STAGES = frozenset(
    "$match $project $addFields $set $unset $group $sort $limit $skip $unwind $count "
    "$sortByCount $bucket $bucketAuto $facet $lookup $graphLookup $unionWith $replaceRoot "
    "$replaceWith $sample $redact $densify $fill $setWindowFields $geoNear $out $merge".split()
)
_READS = frozenset({"find", "count", "distinct"})
_SIMPLE = {
    "insert_one": ("insert",),
    "insert_many": ("insert",),
    "delete_one": ("delete",),
    "delete_many": ("delete",),
    "create_index": ("ddl",),
    "drop_index": ("ddl",),
    "drop": ("ddl",),
}


def _refuse(what: str) -> tuple[str, str]:
    return (REFUSED, f"mongodb {what}")


def filter_accesses(document: Any) -> list[tuple[str, str]]:
    """The refusals a filter document earns: operators not on the allow-list."""
    found: list[tuple[str, str]] = []
    if not isinstance(document, Mapping):
        return found
    for key, value in document.items():
        if not isinstance(key, str):
            continue
        if key.startswith("$"):
            if key not in _TOP_OPERATORS:
                found.append(_refuse(f"query operator {key}"))
            elif key in ("$and", "$or", "$nor") and isinstance(value, (list, tuple)):
                for item in value:
                    found.extend(filter_accesses(item))
        elif isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
            found.extend(_field_accesses(value))
    return found


def _field_accesses(condition: Mapping[Any, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for op, operand in condition.items():
        op = str(op)
        if not op.startswith("$"):
            continue  # a literal document compared whole
        if op not in _FIELD_OPERATORS:
            found.append(_refuse(f"query operator {op}"))
        elif op == "$not" and isinstance(operand, Mapping):
            found.extend(_field_accesses(operand))
        elif op == "$elemMatch" and isinstance(operand, Mapping):
            if all(str(k).startswith("$") for k in operand):
                found.extend(_field_accesses(operand))
            else:
                found.extend(filter_accesses(operand))
    return found


def _target(spec: Any) -> str:
    """The collection a stage names (``"*"`` for another database or an unreadable one)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        if "db" in spec:
            return "*"
        inner = spec.get("coll", spec.get("into", spec.get("from")))
        if isinstance(inner, Mapping):
            return _target(inner)
        if isinstance(inner, str):
            return inner
    return "*"


def pipeline_accesses(stages: Any) -> list[tuple[str, str]]:
    """Every other collection an aggregation pipeline reads or writes, with the action,
    and the refusals its unknown stages or operators earn."""
    found: list[tuple[str, str]] = []
    for stage in stages if isinstance(stages, (list, tuple)) else ():
        if not isinstance(stage, Mapping):
            found.append(_refuse("pipeline stage that is not a document"))
            continue
        for key, spec in stage.items():
            if key not in _STAGES:
                found.append(_refuse(f"stage {key}"))
            elif key == "$match":
                found.extend(filter_accesses(spec))
            elif key in ("$lookup", "$graphLookup", "$unionWith"):
                raw = spec if key == "$unionWith" else (spec or {}).get("from")
                if raw is not None:
                    found.append(("select", _target(raw)))
                if isinstance(spec, Mapping):
                    found.extend(pipeline_accesses(spec.get("pipeline")))
            elif key == "$out":
                target = _target(spec)
                found.extend((action, target) for action in ("insert", "update", "delete"))
            elif key == "$merge":
                target = _target(spec)
                found.extend((action, target) for action in ("insert", "update"))
            elif key == "$facet" and isinstance(spec, Mapping):
                for sub in spec.values():
                    found.extend(pipeline_accesses(sub))
    return found


def _write_accesses(op: str, collection: str, entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One write (a single operation's, or a bulk request's)."""
    if op in _SIMPLE:
        found = [(action, collection) for action in _SIMPLE[op]]
    else:  # update_one, update_many, replace_one
        found = [("update", collection)]
        if entry.get("upsert"):
            found.append(("insert", collection))
    found.extend(filter_accesses(entry.get("q")))
    change = entry.get("u")
    if isinstance(change, (list, tuple)):  # an update pipeline
        found.extend(pipeline_accesses(change))
    return found


def operation_accesses(
    operation: str, collection: str, command: Mapping[str, Any]
) -> tuple[tuple[str, str], ...]:
    """Every (action, resource) a MongoDB operation needs; ``("refused", why)`` for what
    no grant allows."""
    found: list[tuple[str, str]]
    if operation in _READS:
        found = [("select", collection)]
        found.extend(filter_accesses(command.get("filter", command.get("query"))))
    elif operation in ("aggregate", "aggregate_write"):
        found = [("select", collection), *pipeline_accesses(command.get("pipeline"))]
    elif operation == "bulk_write":
        found = []
        for entry in command.get("ops") or ():
            found.extend(_write_accesses(entry["op"], collection, entry))
    elif operation in ("update_one", "update_many", "replace_one"):
        found = []
        for entry in command.get("updates") or ():
            found.extend(_write_accesses(operation, collection, entry))
    elif operation in ("delete_one", "delete_many"):
        found = [("delete", collection)]
        for entry in command.get("deletes") or ():
            found.extend(filter_accesses(entry.get("q")))
    elif operation in _SIMPLE:
        found = [(action, collection) for action in _SIMPLE[operation]]
    else:
        found = [_refuse(f"operation {operation}")]
    return tuple(dict.fromkeys(found))
