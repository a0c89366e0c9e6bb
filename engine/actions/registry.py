"""The action registry: every action, built-in or plug-in, comes from ``baton.actions``."""

from __future__ import annotations

from importlib.metadata import entry_points

from engine.actions import Action
from engine.errors import BatonError, closest

GROUP = "baton.actions"


class Registry:
    def __init__(self, actions: dict[str, Action]) -> None:
        self._actions = actions

    @classmethod
    def from_entry_points(cls) -> Registry:
        actions: dict[str, Action] = {}
        for ep in entry_points(group=GROUP):
            try:
                action_cls = ep.load()
            except Exception as exc:  # a broken plug-in must not take the engine down
                raise BatonError(
                    f"action plug-in {ep.name!r} ({ep.value}) failed to load: {exc}"
                ) from exc
            actions[ep.name] = action_cls()
        return cls(actions)

    def names(self) -> list[str]:
        return sorted(self._actions)

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            hint = closest(name, self._actions)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise BatonError(
                f"Unknown action {name!r}.{extra} Known actions: {', '.join(self.names())}."
            ) from None

    def add(self, name: str, action: Action) -> None:
        self._actions[name] = action
