"""ddrl: diffusion-based deep RL for scheduling AIGC tasks on collaborating edge servers, in JAX."""

from ddrl import xla_cpu as _xla_cpu

_xla_cpu.install()  # threefry as straight-line code on the CPU: same numbers, no per-hash loop

__version__ = "0.1.0"
