"""Flax modules shared by the agents: plain MLPs and the diffusion policy pieces."""
from ddrl.nets.diffusion import (
    Denoiser,
    DiffusionSchedule,
    conditioned_denoiser,
    make_schedule,
    sample,
    sinusoidal_embedding,
)
from ddrl.nets.mlp import MLP, SMALL_FAN_IN, PartedDense, TwinQ, activation_fn

__all__ = [
    "MLP",
    "PartedDense",
    "SMALL_FAN_IN",
    "TwinQ",
    "activation_fn",
    "Denoiser",
    "conditioned_denoiser",
    "DiffusionSchedule",
    "make_schedule",
    "sample",
    "sinusoidal_embedding",
]
