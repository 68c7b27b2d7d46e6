"""Rows as typed objects: ``fetch_all(sql, params, row_type=Model)``.

After psycopg's ``class_row``: the dict rows of a query validated into instances of a
pydantic model, a dataclass or a TypedDict, by one pydantic ``TypeAdapter`` per type (made
once and kept), so that a whole result is checked in pydantic-core at once. The manager's
and the async manager's ``fetch_all`` both call ``rows_as``: the conversion is written once.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import pydantic

from dbsystem.errors import DataError, InterfaceError
from dbsystem.kernel.types import Row

__all__ = ["rows_as"]

T = TypeVar("T")

_ADAPTERS: dict[Any, pydantic.TypeAdapter[list[Any]]] = {}
_ADAPTERS_LOCK = threading.Lock()
_MAX_ADAPTERS = 1024


def _adapter(row_type: type[Any]) -> pydantic.TypeAdapter[list[Any]]:
    adapter = _ADAPTERS.get(row_type)
    if adapter is None:
        try:
            adapter = pydantic.TypeAdapter(list[row_type])  # type: ignore[valid-type]
        except (pydantic.PydanticUserError, TypeError) as exc:
            # (PydanticSchemaGenerationError is a PydanticUserError.)
            raise InterfaceError(
                f"row_type={row_type!r} cannot hold a row: give a pydantic model, a "
                f"dataclass or a TypedDict ({str(exc).splitlines()[0]})"
            ) from None
        with _ADAPTERS_LOCK:
            if len(_ADAPTERS) < _MAX_ADAPTERS:
                _ADAPTERS[row_type] = adapter
    return adapter


def rows_as(rows: list[Row], row_type: type[T], *, backend: str | None = None) -> list[T]:
    """``rows`` as instances of ``row_type`` (a pydantic model, a dataclass, a TypedDict).

    A row that does not fit raises ``DataError`` naming the row, the field and why (never
    the value, which may be private).
    """
    adapter = _adapter(row_type)
    try:
        found: list[T] = adapter.validate_python(rows)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"row {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise DataError(
            f"a row does not fit row_type={row_type.__name__}: {problems}", backend=backend
        ) from None
    return found
