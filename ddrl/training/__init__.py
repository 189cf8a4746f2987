"""Training: the off-policy and on-policy loops, the episode-metrics accumulator, the chunked
trainer (`make_trainer`) and the host runner (`run_training`: checkpoints, resume, NaN guard)."""
from ddrl.training.host import NonFiniteLossError, batch_sharding, run_training, seed_keys, shard
from ddrl.training.memory import InsufficientMemoryError
from ddrl.training.trainer import (EVAL_MODES, METHOD_KEYS, MethodSpec, RunnerState, Trainer, config_items, make_trainer,
                                   split_method)

__all__ = [
    "EVAL_MODES", "InsufficientMemoryError", "METHOD_KEYS", "MethodSpec", "NonFiniteLossError", "RunnerState", "Trainer", "batch_sharding", "config_items",
    "make_trainer", "run_training", "seed_keys", "shard", "split_method",
]
