"""Learning algorithms, one module each, looked up by the name used in `conf/algo/`.

Every module provides `KIND` ("off_policy" or "on_policy"), a frozen `Config`
dataclass of hyper-parameters, `init(key, obs_shape, n_actions, cfg)`,
`act(state, obs, key, explore)` and `update(state, batch, key)`.
"""
import dataclasses
from types import ModuleType
from typing import Any

from ddrl.agents import common, d2sac, dqn, factored_d2sac, lad, ppo, sac, topk_dqn

REGISTRY: dict[str, ModuleType] = {
    "d2sac": d2sac,
    "d2sac_published": d2sac,
    "d2sac_factored": factored_d2sac,
    "dqn": dqn,
    "lad": lad,
    "sac": sac,
    "ppo": ppo,
    "topk_dqn": topk_dqn,
}

# Presets whose defaults differ from their module's `Config()`.
PRESETS: dict[str, Any] = {"d2sac_published": d2sac.PUBLISHED}


def get(name: str) -> ModuleType:
    """The agent module registered as `name`."""
    if name not in REGISTRY:
        raise KeyError(f"unknown agent {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def make_config(name: str, overrides: Any = None) -> Any:
    """The `Config` of agent `name`: its preset defaults updated with `overrides` (a mapping)."""
    module = get(name)
    base = PRESETS.get(name, module.Config())
    if overrides is None:
        return base
    override_cfg = common.config_from(module.Config, overrides)  # validates the keys
    given = {k for k in _keys(overrides) if k not in ("name", "kind")}
    return dataclasses.replace(base, **{k: getattr(override_cfg, k) for k in given})


def _keys(mapping: Any) -> list[str]:
    return list(mapping.keys())
