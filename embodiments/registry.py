"""The embodiment registry: every hand dexworld knows, by name.

Built-in hands are YAML specs in ``embodiments/assets/`` plus the human hand; users add theirs with
:func:`register` (an :class:`Embodiment`, a factory, or a YAML spec path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import Embodiment
from .layout import NUM_HAND_JOINTS, side_offset

ASSETS = Path(__file__).parent / "assets"
_factories: dict[str, Callable[[], Embodiment]] = {}
_cache: dict[str, Embodiment] = {}


def register(item: Embodiment | Callable[[], Embodiment] | str | Path, name: str | None = None,
             overwrite: bool = False) -> str:
    """Add a hand: an Embodiment instance, a zero-argument factory (needs ``name``), or a YAML spec path.

    Returns the registered name. Registering an existing name needs ``overwrite=True``; the built-in hands'
    names (:func:`builtin_names`) cannot be taken at all, whatever the order of calls.
    """
    if isinstance(item, str | Path):
        from .spec import load_spec
        from .urdf_hand import UrdfHand

        spec = load_spec(item)
        _check_name(spec.name, True, where=f"hand spec {item}: ")  # a reserved name fails before the build
        hand = UrdfHand(spec)  # built now so a bad spec fails at registration, not at first use
        name, factory = spec.name, (lambda: hand)
    elif isinstance(item, Embodiment):
        name, factory = item.name, (lambda: item)
    elif callable(item):
        if name is None:
            raise ValueError("register(factory) needs name=")
        factory = item
    else:
        raise TypeError("register() takes an Embodiment, a factory with name=, or a YAML spec path")
    _check_name(name, overwrite)
    _factories[name] = factory
    _cache.pop(name, None)
    return name


def _check_name(name: str, overwrite: bool, where: str = "") -> None:
    _load_builtins()
    if name in _builtins:
        raise ValueError(f"{where}embodiment name {name!r} is reserved for a built-in hand and cannot be replaced; "
                         "give yours another name")
    if name in _factories and not overwrite:
        raise ValueError(f"{where}embodiment {name!r} is already registered; pass overwrite=True to replace it")




def names() -> list[str]:
    """Registered embodiment names, sorted."""
    _load_builtins()
    return sorted(_factories)


def get(name: str | Embodiment) -> Embodiment:
    """The embodiment called ``name`` (built on first use, then cached)."""
    if isinstance(name, Embodiment):
        return name
    _load_builtins()
    if name not in _factories:
        raise KeyError(f"unknown embodiment {name!r}; registered: {', '.join(sorted(_factories))}")
    if name not in _cache:
        _cache[name] = _factories[name]()
    return _cache[name]


_builtins_loaded = False
_builtins: set[str] = set()


def builtin_names() -> list[str]:
    """Names of the hands that ship with dexworld (reserved: :func:`register` refuses them)."""
    _load_builtins()
    return sorted(_builtins)


def _load_builtins() -> None:
    """Register the built-in hands lazily (specs are parsed only when a hand is first asked for)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from .spec import load_spec
    from .urdf_hand import UrdfHand

    for path in sorted(ASSETS.glob("*.yaml")):
        spec_name = path.stem
        _factories[spec_name] = lambda p=path: UrdfHand(load_spec(p))
    from . import human

    for side in ("left", "right"):
        _factories[f"mano_{side}"] = lambda s=side: human.HumanHand(s)
        _factories[f"webxr_{side}"] = lambda s=side: human.WebXRHand(s)
    _builtins.update(_factories)


def mirror_twin(embodiment: str) -> str | None:
    """The registered hand that mirrors ``embodiment`` (``X_left`` ↔ ``X_right``: the other side, the same joint
    slots), or None. The built-in left hands are mirror images of the right ones."""
    for a, b in (("_left", "_right"), ("_right", "_left")):
        if embodiment.endswith(a):
            twin = embodiment[: -len(a)] + b
            break
    else:
        return None
    if twin not in names() or embodiment not in names():
        return None
    e, t = get(embodiment), get(twin)

    def hand_mask(x: Embodiment) -> np.ndarray:
        o = side_offset(x.side)
        return x.slot_mask[o:o + NUM_HAND_JOINTS]

    if e.side == t.side or not np.array_equal(hand_mask(e), hand_mask(t)):
        return None
    return twin
