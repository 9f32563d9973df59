"""Frozen records: ``dataclasses.dataclass(frozen=True)`` for the value types of
the modules the guest daemon loads, without importing ``dataclasses`` (it pulls in
inspect, ast, dis and tokenize): +0.4 to 1.2 MiB over what the daemon loads
anyway, and ``typing`` +0.2 to 0.6 MiB (the figure depends on what the
allocator has free), against the 4.8 MiB the daemon adds to a bare interpreter,
in every guest (measured: bench/bench_daemon.py, "does not import").
dom0/ and sim/ use dataclasses and typing as usual.

Fields come from the class annotations, in order; a class attribute is the
field's default.  ``__post_init__`` runs after assignment, as with dataclasses.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING; importing typing: +0.2-0.6 MiB in every guest
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")

    @dataclass_transform(frozen_default=True)
    def frozen(cls: type[T]) -> type[T]: ...
else:
    def frozen(cls):
        names = tuple(cls.__dict__.get("__annotations__", {}))
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
        post_init = cls.__dict__.get("__post_init__")

        def __init__(self, *args, **kwargs):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes at most {len(names)} arguments")
            values = dict(zip(names, args))
            for key, value in kwargs.items():
                if key not in names or key in values:
                    raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument {key!r}")
                values[key] = value
            for name in names:
                if name not in values:
                    if name not in defaults:
                        raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                    values[name] = defaults[name]
                object.__setattr__(self, name, values[name])
            if post_init is not None:
                post_init(self)

        def _values(self):
            return tuple(getattr(self, n) for n in names)

        def __setattr__(self, name, value):
            raise AttributeError(f"cannot assign to field {name!r} of a frozen {cls.__name__}")

        def __delattr__(self, name):
            raise AttributeError(f"cannot delete field {name!r} of a frozen {cls.__name__}")

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return _values(self) == _values(other)

        def __hash__(self):
            return hash(_values(self))

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{cls.__name__}({inner})"

        for fn in (__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__):
            fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
            setattr(cls, fn.__name__, fn)
        cls.__record_fields__ = names
        return cls


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    return obj.__record_fields__  # type: ignore[attr-defined,no-any-return]


def asdict(obj: object) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in fields(obj)}

