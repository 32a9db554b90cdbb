"""Events to JSON and back, exactly.

The store keeps each event as the JSON of its dataclass fields. Decoding gives back
an equal frozen dataclass: ISO strings become ``datetime`` again (naive stays naive),
arrays become tuples, ``null`` becomes ``None``, and a ``Literal`` value outside its
set is refused. Decoders are built from the type hints once, at import, so an event
type with a field the codec cannot carry fails loudly here, not in the field.

The JSON is ASCII (``ensure_ascii``): errorlog text read with ``surrogateescape``
keeps its undecodable bytes, and NaN/Infinity survive as JSON's usual extensions.

>>> from datetime import datetime
>>> from monitor.events import ServerShutdown
>>> ev = ServerShutdown(time=datetime(2024, 5, 1, 3, 4, 5), kind="nowait", by="sa", offset=10)
>>> text = encode_event(ev)
>>> text
'{"time":"2024-05-01T03:04:05","kind":"nowait","by":"sa","offset":10}'
>>> decode_event("ServerShutdown", text) == ev
True
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from monitor import events
from monitor.events import Event

_Decode = Callable[[object], object]

#: Every event class in monitor/events.py, by class name (the ``kind`` column).
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in get_args(events.Event)}


def event_kind(event: Event) -> str:
    """The name the store files ``event`` under: its class name."""
    return type(event).__name__


def event_time(event: Event) -> str | float | None:
    """The event's own time: ISO text for errorlog times, POSIX seconds for agent observations.

    A started process is dated by its create time, an exited one by its exit time.
    """
    if isinstance(event, events.ProcessStarted):
        return event.create_time
    if isinstance(event, events.ProcessExited):
        return event.exit_time
    value = event.time
    return value.isoformat() if isinstance(value, datetime) else value


def encode_event(event: Event) -> str:
    """The JSON text of ``event``'s fields (compact, ASCII). Raises TypeError for a non-event."""
    if type(event).__name__ not in EVENT_TYPES:
        raise TypeError(f"not an asewatch event: {type(event).__name__}")
    doc = {f.name: _plain(getattr(event, f.name)) for f in fields(event)}
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


def decode_event(kind: str, payload: str) -> Event:
    """The event of class ``kind`` that ``payload`` (from :func:`encode_event`) describes.

    Raises ValueError when the kind is unknown or the payload does not match the class:
    a missing or extra field, or a value of the wrong type.
    """
    entry = _DECODERS.get(kind)
    if entry is None:
        raise ValueError(f"unknown event kind {kind!r}")
    cls, decoders = entry
    try:
        doc = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{kind}: payload is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{kind}: payload is not a JSON object")
    if doc.keys() != decoders.keys():
        missing = sorted(decoders.keys() - doc.keys())
        extra = sorted(doc.keys() - decoders.keys())
        raise ValueError(f"{kind}: payload fields differ (missing {missing}, unexpected {extra})")
    values: dict[str, Any] = {}
    for name, decode in decoders.items():
        try:
            values[name] = decode(doc[name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{kind}.{name}: {exc}") from None
    return cls(**values)


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- decoders from type hints


def _expect(kind: type, label: str) -> _Decode:
    def decode(value: object) -> object:
        # bool is an int to Python but never a number in an event.
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise TypeError(f"expected {label}, got {type(value).__name__}")
        return value

    return decode


def _float(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _datetime(value: object) -> object:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO date-time string, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def _decoder_for(hint: Any, where: str) -> _Decode:
    origin = get_origin(hint)
    args = get_args(hint)
    simple: dict[object, _Decode] = {
        bool: _expect(bool, "true/false"),
        int: _expect(int, "an integer"),
        str: _expect(str, "a string"),
        float: _float,
        datetime: _datetime,
    }
    if hint in simple:
        return simple[hint]
    if origin is Literal:
        allowed = frozenset(args)

        def literal(value: object) -> object:
            if not isinstance(value, str | int) or isinstance(value, bool) or value not in allowed:
                raise ValueError(f"{value!r} is not one of {sorted(map(str, allowed))}")
            return value

        return literal
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner = _decoder_for(rest[0], where)
            return lambda value: None if value is None else inner(value)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _decoder_for(args[0], where)

        def sequence(value: object) -> object:
            if not isinstance(value, list):
                raise TypeError(f"expected an array, got {type(value).__name__}")
            return tuple(item(v) for v in value)

        return sequence
    raise TypeError(f"codec cannot carry {hint!r} ({where}); teach monitor/codec.py")


def _build(cls: type[Event]) -> tuple[type[Event], dict[str, _Decode]]:
    hints = get_type_hints(cls)
    return cls, {f.name: _decoder_for(hints[f.name], f"{cls.__name__}.{f.name}") for f in fields(cls)}


_DECODERS: dict[str, tuple[type[Event], dict[str, _Decode]]] = {
    name: _build(cls) for name, cls in EVENT_TYPES.items()
}
