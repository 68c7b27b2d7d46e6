"""The library's loggers. Each escapes line breaks in the arguments of its messages, so text
that came from a user or a database (a lease label, SQL, a parameter, an error message)
cannot forge a log line (the test catalog's S19).

A message's format string is the library's own and may span lines; so may an argument the
library marks with ``multiline()`` (a stack it formatted). Tracebacks attached with
``exc_info`` are left as they are.
"""

from __future__ import annotations

import logging

_BREAKS = str.maketrans(
    {"\r": "\\r", "\n": "\\n", "\x85": "\\x85", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


class _Multiline(str):
    """Text the library produced itself, allowed to span lines in a log message."""

    __slots__ = ()


def multiline(text: str) -> str:
    """Mark ``text`` (the library's own, such as a formatted stack) as allowed to span lines."""
    return _Multiline(text)


def _escaped(arg: object) -> object:
    if isinstance(arg, _Multiline):
        return arg
    if isinstance(arg, str):
        return arg.translate(_BREAKS)
    if isinstance(arg, BaseException):
        return str(arg).translate(_BREAKS)
    return arg


class _EscapeLineBreaks(logging.Filter):
    """Escapes line breaks in a record's string and exception arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_escaped(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: _escaped(value) for key, value in args.items()}
        return True


_FILTER = _EscapeLineBreaks()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the line-break filter installed (once)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
