"""Environments by name: `make("mec_amcoedge", preset="fidelity")` or any gymnax id."""

from __future__ import annotations

from typing import Any

from ddrl.envs.scenarios import SCENARIOS, build_mec

REGISTERED = tuple(f"mec_{name}" for name in SCENARIOS)


def make(name: str, **env_cfg: Any):
    """(env, params) for a registered MEC scenario `mec_<scenario>` or a gymnax environment id."""
    if name.startswith("mec_"):
        return build_mec({"scenario": name.removeprefix("mec_"), **env_cfg})
    import gymnax

    return gymnax.make(name, **env_cfg)
