"""Counter-based seeding: one private ``torch.Generator`` per (seed, stream, key...) tuple.

Keying every group's draw on (seed, group index) is what makes item k of a noise design identical whether it
is generated alone (``batch_index`` from LatentFromBatch) or inside the full batch. The global torch RNG is
never touched (core ``prepare_noise`` calls ``torch.manual_seed``; we do not).
"""

from __future__ import annotations

import numpy as np
import torch

from .validation import check_seed

# Stream tags keep the different uses of one user seed statistically independent.
STREAM_ANTITHETIC = 0xA17
STREAM_SOBOL_SCRAMBLE = 0x5C0B
STREAM_SOBOL_FILL = 0xF111
STREAM_SOBOL_LOW_DIGITS = 0x10D1
STREAM_STEP = 0x57E9
STREAM_PROBE = 0x9A0BE

_MASK64 = (1 << 64) - 1


def keyed_seed(seed: int, *keys: int) -> int:
    """A 64-bit seed derived from ``seed`` (an integer in [0, 2**64), else ValueError) and integer keys (numpy
    SeedSequence hashing, platform independent)."""
    entropy = [check_seed(seed), *[int(k) & _MASK64 for k in keys]]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 32) | int(state[1])


def keyed_generator(seed: int, *keys: int) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded from (seed, *keys)."""
    return torch.Generator(device="cpu").manual_seed(keyed_seed(seed, *keys))
