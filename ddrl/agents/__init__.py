"""Learning algorithms, one module each, looked up by the name used in `conf/algo/`.

Every module provides `KIND` ("off_policy" or "on_policy"), a `Config` pytree of
hyper-parameters (traced fields and `common.static` ones), `init(key, obs_shape, n_actions, cfg)`, `act(state, obs, key, explore)`
and `update(state, batch, key)`; `make_agent` wraps it in the agent protocol of
`ddrl.agents.base` (the module's own agent class where it has abilities of its own: top-k
and set actions, LAD-TS's latent table), and in `PerGroup` for one agent per base station.
Registry key = module name = the `name` in `conf/algo/*.yaml`.
"""
import dataclasses
from types import ModuleType
from typing import Any

import jax

from ddrl.agents import common, d2sac, d2sac_factored, d2sac_set, dqn, lad_ts, ppo, sac, topk_dqn
from ddrl.agents.base import ActContext, AgentSpec, ModuleAgent, OnPolicyModuleAgent
from ddrl.agents.per_group import PerGroup

REGISTRY: dict[str, ModuleType] = {
    "d2sac": d2sac,
    "d2sac_published": d2sac,
    "d2sac_factored": d2sac_factored,
    "d2sac_set": d2sac_set,
    "dqn": dqn,
    "lad_ts": lad_ts,
    "sac": sac,
    "ppo": ppo,
    "topk_dqn": topk_dqn,
}

# Presets whose defaults differ from their module's `Config()`.
PRESETS: dict[str, Any] = {"d2sac_published": d2sac.PUBLISHED}

# Agents with abilities of their own (everything else is a plain ModuleAgent).
AGENT_CLASSES: dict[str, type] = {
    "d2sac_factored": d2sac_factored.FactoredAgent,
    "d2sac_set": d2sac_set.SetAgent,
    "lad_ts": lad_ts.LatentAgent,
    "topk_dqn": topk_dqn.TopKAgent,
}

__all__ = ["ActContext", "AgentSpec", "PerGroup", "REGISTRY", "get", "make_agent", "make_config", "transfer_weights"]


def get(name: str) -> ModuleType:
    """The agent module registered as `name`."""
    if name not in REGISTRY:
        raise KeyError(f"unknown agent {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def acts_grouped(name: str) -> bool:
    """Whether agent `name`, stacked per BS, can act grouped (`group_acting: grouped`)."""
    return AGENT_CLASSES.get(name, ModuleAgent).can_act_grouped(get(name))


def make_config(name: str, overrides: Any = None) -> Any:
    """The `Config` of agent `name`: its preset defaults updated with `overrides` (a mapping)."""
    module = get(name)
    base = PRESETS.get(name, module.Config())
    if overrides is None:
        return base
    override_cfg = common.config_from(module.Config, overrides)  # validates the keys
    given = {k for k in _keys(overrides) if k not in ("name", "kind")}
    return dataclasses.replace(base, **{k: getattr(override_cfg, k) for k in given})


def make_agent(name: str, config: Any, spec: AgentSpec, per_group: bool = False,
               group_acting: str = "auto") -> Any:
    """The agent `name` with `config` (a Config) for an environment described by `spec`.

    `per_group`: one agent per base station (`spec.num_groups` of them, stacked).
    """
    module = get(name)
    if module.KIND == "on_policy":
        if per_group:
            raise ValueError(f"per_bs: only off-policy agents support per-BS stacking, not {name}")
        return OnPolicyModuleAgent(name, module, config, spec.num_actions)
    cls = AGENT_CLASSES.get(name, ModuleAgent)
    extra = {"cells_per_group": spec.cells_per_group} if cls is lad_ts.LatentAgent else {}
    agent = cls(name, module, config, spec.num_actions, **extra)
    return PerGroup(agent, spec.num_groups, group_acting) if per_group else agent


def _keys(mapping: Any) -> list[str]:
    return list(mapping.keys())


def transfer_weights(source: Any, target: Any) -> Any:
    """`target` (agent states) with every network weight taken from `source`.

    Zero-shot transfer: a policy trained on one environment evaluated on another (e.g. at
    another number of servers) keeps `target`'s rest (counters, schedules, hyper-parameters,
    its static layout) and takes `source`'s leaves under a `params` node: the networks, their
    targets, log α and the optimiser moments of each (Adam keeps them as `params` trees
    too). Both must be states of the same agent
    (same tree once static fields are set aside); a weight whose shape differs, as every
    weight of a per-BS stack or of a network whose width depends on B does, is a ValueError.
    Works on arrays or on `jax.ShapeDtypeStruct`s (a check before anything is trained).
    """
    source_leaves = jax.tree_util.tree_flatten_with_path(source)[0]
    target_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
    if len(source_leaves) != len(target_leaves):
        raise ValueError(f"zero-shot transfer: the agent states differ ({len(source_leaves)} vs "
                         f"{len(target_leaves)} leaves)")  # fmt: skip
    leaves = []
    for (path, weight), (target_path, kept) in zip(source_leaves, target_leaves):
        if path != target_path:
            raise ValueError(f"zero-shot transfer: the agent states differ at {jax.tree_util.keystr(path)}")
        if not _is_weight(path):
            leaves.append(kept)
            continue
        if weight.shape != kept.shape:
            raise ValueError(f"zero-shot transfer: weight {jax.tree_util.keystr(path)} has shape {weight.shape} "
                             f"here and {kept.shape} there; only networks whose weights do not depend on the "
                             "environment's size (d2sac_set, one agent for every BS: per_bs false) transfer")
        leaves.append(weight)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _is_weight(path: tuple) -> bool:
    return any(getattr(entry, "name", getattr(entry, "key", None)) == "params" for entry in path)
