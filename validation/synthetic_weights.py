"""Deterministic synthetic weights: the reference data's documented fill rule, in numpy.

No real pretrained weights can be shipped; tests and ``ffkit demo`` use these instead. The rule
depends only on each tensor's key, shape and dtype (plus a model's regex overrides), so the
same weights come out of a manifest or of a freshly built model's ``state_dict``.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Iterable, Sequence

import numpy as np

Override = Sequence  # (regex, kind, a, b)


def fill_tensor(key: str, shape: Sequence[int], dtype: str, seed: int, overrides: Iterable[Override] = ()) -> np.ndarray:
    """One tensor for module key ``key`` (no ``module.`` prefix, no ``params_ema`` wrapper).

    * ``*num_batches_tracked`` -> zeros (int64);
    * else ``rng = default_rng([seed, crc32(key)])`` and the first matching override
      (``uniform a b``, ``normal mean=a std=b``, ``scaled_normal``: N(0,1) * a / sqrt(fan_in));
    * else ``running_var`` U(0.5, 1.5), ``running_mean`` N(0, 0.1), ndim >= 2 N(0,1)/sqrt(fan_in),
      1-D ``*weight`` U(0.8, 1.2), anything else N(0, 0.02).
    Sampled in float64 over the full shape, then cast to ``dtype``.
    """
    shape = tuple(int(s) for s in shape)
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])
    fan_in = math.prod(shape[1:]) if shape else 1
    for pattern, kind, a, b in overrides:
        if re.search(pattern, key):
            if kind == "uniform":
                arr = rng.uniform(a, b, size=shape)
            elif kind == "normal":
                arr = rng.normal(a, b, size=shape)
            elif kind == "scaled_normal":
                arr = rng.normal(0.0, 1.0, size=shape) * (float(a) / math.sqrt(fan_in))
            else:
                raise ValueError(f"unknown override kind {kind!r}")
            break
    else:
        if key.endswith("running_var"):
            arr = rng.uniform(0.5, 1.5, size=shape)
        elif key.endswith("running_mean"):
            arr = rng.normal(0.0, 0.1, size=shape)
        elif len(shape) >= 2:
            arr = rng.normal(0.0, 1.0, size=shape) * (1.0 / math.sqrt(fan_in))
        elif len(shape) == 1 and key.endswith("weight"):
            arr = rng.uniform(0.8, 1.2, size=shape)
        else:
            arr = rng.normal(0.0, 0.02, size=shape)
    return np.asarray(arr, dtype=np.float64).reshape(shape).astype(np.dtype(dtype))


def fill_state_dict(layout: Iterable[tuple[str, Sequence[int], str]], seed: int,
                    overrides: Iterable[Override] = (), key_prefix: str = "") -> dict[str, np.ndarray]:
    """``{key: array}`` for every ``(key, shape, dtype)`` of ``layout``, in order.

    ``key_prefix`` (e.g. ``"module."``) is stripped from a key before it seeds the generator,
    as the rule is defined on the module's own keys; the returned keys are as given.
    """
    overrides = [tuple(o) for o in overrides]
    out = {}
    for key, shape, dtype in layout:
        mkey = key[len(key_prefix):] if key_prefix and key.startswith(key_prefix) else key
        out[key] = fill_tensor(mkey, shape, dtype, seed, overrides)
    return out
