"""Reward registry: ``@register_reward``, `get_reward` and `list_rewards`.

A reward is any callable with TRL's reward-function signature,
``reward(prompts, completions, **columns) -> list[float | None]`` (``None`` = "could not score this row"; TRL turns
it into NaN and leaves it out of the statistics). Registering one under a name lets configs and the CLI refer to it
by that name (``reward_funcs=["comet", "average_lagging"]``).

Two kinds of objects can be registered:

- a plain reward function (``factory=False``, the default): ``get_reward(name)`` returns it unchanged;
  ``get_reward(name, **kwargs)`` binds ``kwargs`` with `functools.partial`;
- a factory (``factory=True``): ``get_reward(name, **kwargs)`` calls it with ``kwargs`` and returns the reward it
  builds, renamed to ``name`` so TRL logs it as ``rewards/<name>/mean``.

Example:
    >>> from trl_seqpo.rewards import get_reward, register_reward
    >>> @register_reward("length_ratio_example")
    ... def length_ratio(prompts, completions, reference, **kwargs):
    ...     return [len(c) / max(len(r), 1) for c, r in zip(completions, reference)]
    >>> reward = get_reward("length_ratio_example")
    >>> reward(prompts=["p"], completions=["abcd"], reference=["ab"])
    [2.0]
    >>> get_reward("bleu").__name__
    'bleu'
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

RewardFunc = Callable[..., list[float | None]]
"""TRL's reward-function signature: ``(prompts, completions, **columns) -> list[float | None]``."""

F = TypeVar("F", bound=Callable[..., Any])

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]*$")

# Modules whose import registers the built-in rewards (imported on first lookup, not at package import).
_BUILTIN_MODULES: tuple[str, ...] = (
    "trl_seqpo.rewards.quality",
    "trl_seqpo.rewards.latency",
    "trl_seqpo.rewards.judge",
)


@dataclass(frozen=True)
class RewardEntry:
    """One registered reward.

    Args:
        name: The registered (lowercase) name.
        target: The reward function, or the factory that builds one.
        factory: Whether ``target`` is a factory.
    """

    name: str
    target: Callable[..., Any]
    factory: bool


REWARD_REGISTRY: dict[str, RewardEntry] = {}
"""Registered rewards by name. Use `register_reward` to add to it, not item assignment."""


def register_reward(name: str, *, factory: bool = False) -> Callable[[F], F]:
    """Register a reward function (or a reward factory) under ``name``.

    Args:
        name: Lowercase name: letters, digits, ``_`` and ``-``, starting with a letter. Must not be taken.
        factory: ``True`` if the decorated callable takes settings as keyword arguments and *returns* a reward
            function; `get_reward` then calls it. ``False`` if it *is* a reward function.

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: If ``name`` is not lowercase/valid or is already registered.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(
            f"Reward name {name!r} is not valid: use lowercase letters, digits, '_' or '-', starting with a letter "
            f"(e.g. {str(name).strip().lower().replace(' ', '_')!r})."
        )

    def decorator(target: F) -> F:
        if not callable(target):
            raise TypeError(f"@register_reward({name!r}) must decorate a function or class, got {type(target)!r}.")
        existing = REWARD_REGISTRY.get(name)
        if existing is not None and existing.target is not target:
            raise ValueError(
                f"A reward named {name!r} is already registered ({_describe(existing.target)}). Pick another name, "
                f"or pass your callable directly to the trainer instead of registering it."
            )
        REWARD_REGISTRY[name] = RewardEntry(name=name, target=target, factory=factory)
        return target

    return decorator


def _describe(target: Callable[..., Any]) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_rewards() -> list[str]:
    """Return the sorted names of all registered rewards (built-ins included)."""
    _load_builtins()
    return sorted(REWARD_REGISTRY)


def get_reward(name_or_callable: str | RewardFunc, **kwargs: Any) -> RewardFunc:
    """Return a TRL-compatible reward function.

    Args:
        name_or_callable: A registered name (case-insensitive), or a callable, which is returned unchanged.
        **kwargs: Settings. For a factory they are its arguments (e.g. ``get_reward("comet", model=path)``); for a
            plain reward function they are bound with `functools.partial`.

    Returns:
        A callable ``(prompts, completions, **columns) -> list[float | None]`` whose ``__name__`` is the registered
        name (TRL logs rewards by name). Factory results and bound functions stay picklable when the registered
        function and the factory's result are.

    Raises:
        ValueError: If the name is unknown (the message lists the known names).
        TypeError: If kwargs are given together with a callable, or the reward does not accept them.
    """
    if callable(name_or_callable):
        if kwargs:
            raise TypeError(
                "get_reward() got settings for a callable; configure the callable yourself, or pass a registered name."
            )
        return name_or_callable
    if not isinstance(name_or_callable, str):
        raise TypeError(f"get_reward() expects a reward name or a callable, got {type(name_or_callable).__name__}.")
    _load_builtins()
    key = name_or_callable.strip().lower()
    entry = REWARD_REGISTRY.get(key)
    if entry is None:
        from trl_seqpo.rewards.latency import registered_latency_reward

        latency = registered_latency_reward(key, **kwargs)  # every registered latency metric is a reward
        if latency is not None:
            return latency
        raise ValueError(f"Unknown reward {name_or_callable!r}. Known rewards: {', '.join(sorted(REWARD_REGISTRY))}.")

    if entry.factory:
        reward = entry.target(**kwargs)
        # Keep the factory's docs on the result, but log it under the registered name.
        functools.update_wrapper(reward, entry.target, updated=())
        reward.__name__ = reward.__qualname__ = entry.name
        return reward
    if not kwargs:
        return entry.target
    bound = functools.partial(entry.target, **kwargs)
    functools.update_wrapper(bound, entry.target)
    return bound
