"""ddrl.provenance without running anything: hash, claims, lock, atomic and strict writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ddrl import provenance
from ddrl.provenance import RunDirError

CONFIG = {"seed": 0, "logger": {"kind": "none"}, "resume": False, "only": None, "views": ["clean"],
          "methods": {"d2sac": {"actor_lr": 1e-4, "gamma": 0.95}}, "experiment_name": "x",
          "trainer": {"num_envs": 32, "num_chunks": 10, "checkpoint_every_s": 60}, "jobs": 1}  # fmt: skip


def _with(**changes):
    config = json.loads(json.dumps(CONFIG))
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


def test_the_hash_ignores_what_never_changes_a_number():
    same = _with(logger={"kind": "wandb"}, resume=True, only=["d2sac"], views=["clean", "fidelity"], experiment_name="y",
                 trainer__checkpoint_every_s=0, jobs=2)  # a nested excluded key (trainer.checkpoint_every_s) too
    assert provenance.config_hash(same) == provenance.config_hash(CONFIG)
    assert CONFIG["trainer"]["checkpoint_every_s"] == 60  # the exclusion did not edit the config it hashed
    changed = _with(methods__d2sac__gamma=0.5, trainer__num_envs=16)
    assert provenance.config_hash(changed) != provenance.config_hash(CONFIG)
    assert provenance.differing_keys(CONFIG, changed) == ["methods.d2sac.gamma: 0.95 -> 0.5", "trainer.num_envs: 32 -> 16"]


def test_a_config_with_an_infinite_value_hashes_the_same_after_the_manifest_round_trip(tmp_path):
    config = _with(methods__d2sac__clip_x0=math.inf)  # e.g. conf/algo/ddrl_amsa_tuned.yaml's `clip_x0: .inf`
    manifest = provenance.start(tmp_path, config, [], resume=False)
    stored = provenance.read_manifest(tmp_path)
    assert stored["config"]["methods"]["d2sac"]["clip_x0"] == "inf"
    assert provenance.config_hash(stored["config"]) == manifest["config_hash"] == provenance.config_hash(config)
    assert provenance.differing_keys(stored["config"], config) == []
    assert provenance.config_hash(_with(methods__d2sac__clip_x0=3.0)) != manifest["config_hash"]


def test_claims(tmp_path):
    run_dir = tmp_path / "run"
    earlier = provenance.claim(run_dir, CONFIG, resume=False)
    assert earlier is None
    manifest = provenance.start(run_dir, CONFIG, ["seed=0"], resume=False)
    assert provenance.read_manifest(run_dir)["status"] == "running"  # this process holds the lock
    (run_dir / "summary.json").write_text("{}")
    provenance.finish(run_dir, manifest, "complete")
    assert provenance.read_manifest(run_dir)["status"] == "complete"
    with pytest.raises(RunDirError, match="already holds another run"):
        provenance.claim(run_dir, CONFIG, resume=False)
    with pytest.raises(RunDirError, match=r"differs in methods.d2sac.actor_lr: 0.0001 -> 0.5"):
        provenance.claim(run_dir, _with(methods__d2sac__actor_lr=0.5), resume=True)
    assert provenance.claim(run_dir, _with(resume=True), resume=True)["status"] == "complete"
    resumed = provenance.start(run_dir, CONFIG, [], resume=True, earlier=provenance.read_manifest(run_dir))
    assert not (run_dir / "summary.json").exists()  # rewritten from the checkpoints at the end
    assert resumed["resumed"] and resumed["earlier"][0]["status"] == "complete"
    provenance.finish(run_dir, resumed, "failed", "interrupted at step 3 of x")
    assert provenance.read_manifest(run_dir)["failure"] == "interrupted at step 3 of x"
    provenance.release_lock(run_dir)


def test_a_resume_records_each_part_and_says_when_code_or_cpu_changed(tmp_path, monkeypatch):
    def on(commit, dirty, model):
        monkeypatch.setattr(provenance, "git_state", lambda: {"commit": commit, "dirty": dirty})
        monkeypatch.setattr(provenance, "cpu_description", lambda: {"model": model, "cores": 2, "vector_flags": []})

    on("a" * 40, False, "CPU A")
    first = provenance.start(tmp_path, CONFIG, ["seed=0"], resume=False)
    assert first["resumed_across"] == []
    provenance.finish(tmp_path, first, "failed", "interrupted at step 3 of x")
    same = provenance.start(tmp_path, CONFIG, [], resume=True, earlier=provenance.read_manifest(tmp_path))
    assert same["resumed_across"] == []  # same clean commit, same CPU model: the uninterrupted run
    assert same["earlier"][0]["git"]["commit"] == "a" * 40 and same["earlier"][0]["cpu"] == {"model": "CPU A", "cores": 2}
    provenance.finish(tmp_path, same, "failed", "interrupted at step 5 of x")
    on("b" * 40, True, "CPU B")
    moved = provenance.start(tmp_path, CONFIG, [], resume=True, earlier=provenance.read_manifest(tmp_path))
    assert [part["failure"] for part in moved["earlier"]] == ["interrupted at step 3 of x", "interrupted at step 5 of x"]
    assert moved["resumed_across"] == ["commit aaaaaaa -> bbbbbbb (dirty)", "cpu CPU A -> CPU B"]
    assert provenance.read_manifest(tmp_path)["resumed_across"] == moved["resumed_across"]


def test_checkpoints_without_a_manifest_are_not_resumed_blindly(tmp_path):
    (tmp_path / "checkpoints" / "clean-x" / "1").mkdir(parents=True)
    with pytest.raises(RunDirError, match="no manifest.json"):
        provenance.claim(tmp_path, CONFIG, resume=True)
    with pytest.raises(RunDirError, match="checkpoints/"):
        provenance.claim(tmp_path, CONFIG, resume=False)
    provenance.release_lock(tmp_path)


def test_lock_is_exclusive_between_processes(tmp_path):
    import subprocess
    import sys

    provenance.acquire_lock(tmp_path, owner="pid 1 on here since now: test")
    assert provenance.is_locked(tmp_path)
    code = ("import sys; from ddrl import provenance\n"
            "try:\n    provenance.acquire_lock(sys.argv[1])\nexcept provenance.RunDirError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True).stdout
    assert "in use by another run (pid 1 on here since now: test)" in out
    provenance.release_lock(tmp_path)
    assert not provenance.is_locked(tmp_path)


def test_atomic_write_replaces_a_symlink_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.md").symlink_to(outside)
    provenance.atomic_write_text(tmp_path / "out" / "results.md", "table")
    assert outside.read_text() == "precious"
    assert not (tmp_path / "out" / "results.md").is_symlink()
    assert (tmp_path / "out" / "results.md").read_text() == "table"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.md"]  # no temporary left


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), provenance.atomic_path(tmp_path / "summary.json") as temporary:
        temporary.write_text("{half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_strict_json_writes_null_with_a_reason():
    text = provenance.strict_json({"methods": [{"mean": math.nan, "ci95": np.float32(np.inf), "n": np.int64(2),
                                                "values": np.array([1.0, -np.inf])}]})  # fmt: skip
    data = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert data["methods"][0] == {"mean": None, "ci95": None, "n": 2, "values": [1.0, None]}
    assert set(data["non_finite"]) == {"methods[0].mean", "methods[0].ci95", "methods[0].values[1]"}
    assert data["non_finite"]["methods[0].mean"].startswith("nan")


def test_an_unwritable_directory_is_one_clear_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(provenance.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(RunDirError, match=f"cannot write to run directory {tmp_path}: Permission denied"):
        provenance.claim(tmp_path, CONFIG, resume=False)
    assert not provenance.is_locked(tmp_path)
