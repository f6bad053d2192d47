"""Training methods by name, registered the way timm registers models.

    @register_method("ours")
    class Ours(Method): ...

    get_method("ours")   # the class; edgekd.train builds it with the run's TrainConfig
    list_methods()       # the names, in registration order

A leaf module (it imports nothing of edgekd but the errors) so that `edgekd.config` can check
`method.name` without importing torch or the methods' config types.
"""

from __future__ import annotations

from collections.abc import Callable, KeysView
from typing import TypeVar

from edgekd.errors import EdgeKDError

T = TypeVar("T", bound=type)

_METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: make a `Method` subclass available as `method=NAME`."""

    def add(cls: T) -> T:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice ({_METHODS[name].__qualname__}, {cls.__qualname__})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def get_method(name: str) -> type:
    """The registered `Method` subclass called `name`."""
    if name not in _METHODS:
        raise EdgeKDError(f"unknown method {name!r}; fix: choose one of {', '.join(_METHODS)}")
    return _METHODS[name]


def list_methods() -> KeysView[str]:
    """The registered names: a live view, so a method registered later (a plug-in, a test) is listed too."""
    return _METHODS.keys()
