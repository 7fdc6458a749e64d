"""A fixed, varied set of English sentences for benchmarks (no data download)."""

from __future__ import annotations

import random

_SUBJECTS = [
    "The committee",
    "A young engineer",
    "My neighbour's dog",
    "The new library",
    "Our research team",
    "The city council",
    "A small startup",
    "The orchestra",
    "An old fisherman",
    "The weather service",
]
_VERBS = [
    "announced",
    "discovered",
    "described",
    "rejected",
    "celebrated",
    "questioned",
    "postponed",
    "explained",
    "reviewed",
    "welcomed",
]
_OBJECTS = [
    "a plan to rebuild the harbour",
    "the results of a long experiment",
    "an unusual pattern in the data",
    "the budget for next year",
    "a festival of traditional music",
    "a faster way to train models",
    "the damage caused by the storm",
    "a proposal for cheaper public transport",
    "the history of the old bridge",
    "a new method for cleaning rivers",
]
_TAILS = [
    "after months of debate.",
    "to a surprised audience.",
    "despite strong objections.",
    "on a rainy Tuesday morning.",
    "with great enthusiasm.",
    "in a short statement.",
    "before the holidays.",
    "without any warning.",
    "at the annual meeting.",
    "for the first time.",
]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        for _ in range(n)
    ]
