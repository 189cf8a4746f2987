"""A training run too large for the machine's memory is refused before anything is compiled."""
import gymnax
import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ddrl.experiments import scheduling
from ddrl.run import CONFIG_DIR
from ddrl.training import InsufficientMemoryError, make_trainer, memory, run_training, seed_keys

TINY_DQN = {"name": "dqn", "hidden": [16], "batch_size": 32, "buffer_size": 1000, "learning_starts": 100}


@pytest.fixture(scope="module")
def trainer():
    env, env_params = gymnax.make("CartPole-v1")
    return make_trainer(TINY_DQN, env, env_params, 800, num_chunks=2, num_envs=4)


def _nbytes(tree) -> int:
    return sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tree))


def test_state_bytes_are_those_of_the_state_init_makes(trainer):
    """From shapes alone: the bytes of the allocated state of 3 seeds, and of its replay buffers
    (CartPole: 1,000 transitions of two 4-float observations and a few scalars per seed)."""
    state, buffers = memory.state_bytes(trainer, 3)
    runner = trainer.batched_init(seed_keys(0, 3))
    assert state == _nbytes(runner)
    assert buffers == _nbytes(runner.buffer)
    assert 3 * 1000 * 2 * 4 * 4 < buffers < state


def test_a_run_that_cannot_hold_its_state_twice_is_refused_with_what_to_change(trainer):
    state, _ = memory.state_bytes(trainer, 3)
    memory.check_training_fits(trainer, 3, "dqn", (2 * state, "test RAM"))  # exactly enough
    with pytest.raises(InsufficientMemoryError, match=r"^dqn: the training state of 3 seeds is .* GiB \(.* of it "
                                                      r"replay buffers\).* of test RAM are free\. .*budget\.seeds"):
        memory.check_training_fits(trainer, 3, "dqn", (2 * state - 1, "test RAM"))


def test_run_training_checks_memory_before_it_starts(trainer, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: (1024, "test RAM"))
    with pytest.raises(InsufficientMemoryError, match="of test RAM are free"):
        run_training(trainer, 0, 2, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert not (tmp_path / "ckpt").exists()  # refused before anything was made
    monkeypatch.setenv("DDRL_SKIP_MEMORY_CHECK", "1")
    memory.check_training_fits(trainer, 2, "dqn")  # the documented way past it


def test_a_scheduling_experiment_checks_every_training_before_the_first(monkeypatch, tmp_path):
    """`+experiment=scale` at B = 100 with DDRL-ATS (100 per-BS buffers per seed) used to be
    killed by the OS after the runs before it; the plan is now checked as a whole first."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "+experiment=scale", "budget=smoke", "views=[B5,B100]", "methods.ddrl_ats.views=null",
            "only=[randcoedge,ddrl_ats]"])  # fmt: skip
    plan = scheduling.plan_runs(cfg)
    trained = [(step.view, step.key) for step in plan if step.action == "train"]
    assert trained == [("B5", "ddrl_ats"), ("B100", "ddrl_ats")]
    sizes = {}
    real_check = memory.check_training_fits

    def record(trainer, num_seeds, what, available=None):
        sizes[what] = memory.state_bytes(trainer, num_seeds)[0]
        return real_check(trainer, num_seeds, what, available)

    monkeypatch.setattr(memory, "check_training_fits", record)
    monkeypatch.setattr(memory, "available_bytes", lambda: (1 << 50, "test RAM"))
    scheduling.check_memory(cfg, plan)
    small, large = sizes["ddrl_ats in view B5"], sizes["ddrl_ats in view B100"]
    assert large > 100 * small  # 20x the agents, each with 20x the observation
    monkeypatch.setattr(memory, "available_bytes", lambda: (2 * small + 1, "test RAM"))
    with pytest.raises(InsufficientMemoryError, match="^ddrl_ats in view B100: "):
        scheduling.check_memory(cfg, plan)
    with pytest.raises(InsufficientMemoryError, match="^ddrl_ats in view B100: "):
        scheduling.run(cfg, tmp_path)  # before B5's training starts
    assert list(tmp_path.iterdir()) == []


def test_runs_that_fit_alone_are_refused_when_jobs_would_train_them_together():
    gib = memory.GIB
    needs = {"a in view B5": 6 * gib, "b in view B5": 5 * gib, "c in view B5": 1 * gib}
    memory.check_together(needs, 1, (7 * gib, "test RAM"))  # one at a time: the largest fits
    memory.check_together(needs, 2, (11 * gib, "test RAM"))  # the two largest together fit
    with pytest.raises(InsufficientMemoryError, match=r"^a in view B5, b in view B5: each fits alone, but with "
                                                      r"jobs=2 .* 11\.00 GiB.* Set jobs=1"):
        memory.check_together(needs, 2, (10 * gib, "test RAM"))


def test_a_run_sharded_over_devices_needs_its_share_on_each(trainer):
    state, _ = memory.state_bytes(trainer, 4)
    memory.check_training_fits(trainer, 4, "dqn", (state // 2, "test memory"), shards=4)
    with pytest.raises(InsufficientMemoryError, match=r"GiB per device over 4 devices, but"):
        memory.check_training_fits(trainer, 4, "dqn", (state // 2 - 1, "test memory"), shards=4)
