"""The action registry: every action, built-in or plug-in, comes from ``baton.actions``."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from engine.actions import Action
from engine.errors import BatonError, closest

GROUP = "baton.actions"


class Registry:
    """Actions by name. Entry points are loaded on first use, so a command that needs
    two actions does not import the code of all of them."""

    def __init__(self, actions: dict[str, Action], points: dict[str, EntryPoint] | None = None):
        self._actions = dict(actions)
        self._points = dict(points or {})
        self._options: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_entry_points(cls) -> Registry:
        return cls({}, {ep.name: ep for ep in entry_points(group=GROUP)})

    def names(self) -> list[str]:
        return sorted({*self._actions, *self._points})

    def __contains__(self, name: object) -> bool:
        return name in self._actions or name in self._points

    def get(self, name: str) -> Action:
        action = self._actions.get(name)
        if action is not None:
            return action
        ep = self._points.get(name)
        if ep is None:
            hint = closest(name, self.names())
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise BatonError(
                f"Unknown action {name!r}.{extra} Known actions: {', '.join(self.names())}."
            )
        try:
            action = ep.load()(**self._options.get(name, {}))
        except Exception as exc:  # a broken plug-in must say so, not take Baton down
            raise BatonError(
                f"action plug-in {ep.name!r} ({ep.value}) failed to load: {exc}"
            ) from exc
        self._actions[name] = action
        return action

    def add(self, name: str, action: Action) -> None:
        self._actions[name] = action

    def configure(self, name: str, **options: Any) -> None:
        """Keyword arguments for the constructor of action ``name`` when it is loaded: its
        settings (the ``ssh`` action's known_hosts file), given by the composition root."""
        self._options[name] = options

    def loaded(self) -> list[Action]:
        """The actions in use so far (only they can hold resources to release)."""
        return list(self._actions.values())
