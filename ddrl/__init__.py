"""ddrl: diffusion-based deep RL for scheduling AIGC tasks on collaborating edge servers, in JAX."""

__version__ = "0.1.0"
