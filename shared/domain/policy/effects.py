"""A rule's effect, one for every entry point or one per entry point.

``effect: block`` decides every claim the rule matches the same way. ``effect: {gate: block, after: audit}``
enforces at the synchronous gate (the save is stopped) but only records a claim heard after the fact, or the
reverse; ``after`` stands for every entry point after the fact (Service Bus, Event Grid, the asynchronous
webhook, the sweep, an admin), and naming one of those (``sweep: hold``) overrides it for that one. Every
entry point must be covered, so a rule never falls silent for one of them by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import SerializerFunctionWrapHandler, model_serializer

from shared.domain.model import Origin
from shared.domain.policy.values import Section, kind

RuleEffect = Literal["block", "override", "hold", "audit", "warn", "prefer-primary"]
RULE_EFFECTS: tuple[str, ...] = ("block", "override", "hold", "audit", "warn", "prefer-primary")
AFTER = "after"
ENTRY_POINTS: tuple[str, ...] = ("gate", AFTER, *(o.value for o in Origin if o is not Origin.GATE))


class ByOrigin(Section):
    """``{gate: block, after: audit}``: the effect for each entry point (None: not named here)."""

    shape = "must be a mapping of entry points to effects, like {gate: block, after: audit}"
    noun = "an effect by entry point"

    gate: RuleEffect | None = None
    after: RuleEffect | None = None
    servicebus: RuleEffect | None = None
    eventgrid: RuleEffect | None = None
    webhook: RuleEffect | None = None
    sweep: RuleEffect | None = None
    admin: RuleEffect | None = None

    def for_origin(self, origin: Origin) -> str | None:
        named: str | None = getattr(self, origin.value)
        if named is not None:
            return named
        return self.gate if origin is Origin.GATE else self.after

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {name: value for name, value in dumped.items() if value is not None}


def effect_spec(value: object) -> object:
    """One effect, or a mapping of entry points to effects; refused with the sentence an admin reads."""
    if isinstance(value, ByOrigin):
        return value
    if isinstance(value, str):
        if value not in RULE_EFFECTS:
            raise ValueError(f"unknown effect {value!r}; use one of {', '.join(RULE_EFFECTS)}")
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"must be one of {', '.join(RULE_EFFECTS)} or a mapping of entry points to effects like "
            f"{{gate: block, after: audit}}, not {kind(value)}"
        )
    problems = []
    for point, effect in value.items():
        if point not in ENTRY_POINTS:
            problems.append(f"unknown entry point {point!r} (use {', '.join(ENTRY_POINTS)})")
        elif not isinstance(effect, str) or effect not in RULE_EFFECTS:
            shown = repr(effect) if isinstance(effect, str) else kind(effect)
            problems.append(f"{point}: unknown effect {shown} (use one of {', '.join(RULE_EFFECTS)})")
    if problems:
        raise ValueError("; ".join(problems))
    spec = ByOrigin.model_validate(dict(value))
    silent = [o.value for o in Origin if spec.for_origin(o) is None]
    if silent:
        raise ValueError(
            f"says nothing for {', '.join(silent)}; add {AFTER}: (every entry point after the fact)"
            + (" and gate:" if "gate" in silent else "")
            + " or name each of them"
        )
    return spec


def effect_for(effect: str | ByOrigin, origin: Origin) -> str:
    """The effect a rule has on a claim heard through ``origin``."""
    if isinstance(effect, ByOrigin):
        found = effect.for_origin(origin)
        assert found is not None  # effect_spec refused any mapping that leaves an entry point out
        return found
    return effect


def label(effect: str | ByOrigin) -> str:
    """The effect as written, for traces: "block", or "gate: block, after: audit"."""
    if isinstance(effect, ByOrigin):
        return ", ".join(f"{point}: {value}" for point, value in effect.model_dump().items())
    return effect


def where(effect: str | ByOrigin, origin: Origin) -> str:
    """For the explanation, when the effect depends on the entry point: which one applied."""
    if not isinstance(effect, ByOrigin):
        return ""
    if origin is Origin.GATE:
        return " (its effect at the gate)"
    return f" (its effect on claims heard after the fact, via {origin.value})"
