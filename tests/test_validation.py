"""The bad-input table (tests/bad_inputs.py): every bad value stops with one line naming its field.

`ddrl.run.precheck` is called in-process, as `python -m ddrl.run` calls it before Hydra starts:
nothing is compiled and nothing is written.
"""

from __future__ import annotations

import pytest
from bad_inputs import BAD_INPUTS
from cli import precheck_lines

from ddrl import validation
from ddrl.envs.scenarios import ConfigError


def test_the_table_has_every_case_of_the_issue():
    assert len(BAD_INPUTS) >= 61
    assert len({overrides for overrides, _ in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("overrides, field", BAD_INPUTS, ids=[o for o, _ in BAD_INPUTS])
def test_bad_value_is_refused_with_one_line_naming_the_field(tmp_path, monkeypatch, overrides, field):
    monkeypatch.chdir(tmp_path)
    code, lines = precheck_lines(overrides.split())
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("ddrl.run: error: "), lines
    assert field in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("overrides", [
    "", "+experiment=amsa", "+experiment=ats", "+experiment=trace", "+experiment=sweep",
    "+experiment=cartpole", "+experiment=hpsearch_d2sac", "env=mec_trace", "env=mec_prototype",
    "env=mec_ladts method=opt_ts", "budget=paper +experiment=amsa", "method=optimal_myopic_cwa",
    "+experiment=amsa budget=smoke logger=none views=[clean] only=[amcoedge]",
    "env.deadline=none", "env.deadline=null", "+experiment=cartpole methods.d2sac.clip_x0=null",
    "+experiment=tune_amsa", "+experiment=tune_amsa budget=smoke tune.methods=[amcoedge] tune.settings=1",
    "+experiment=tune_amsa views=[fidelity]",
    "+experiment=amsa views=[fidelity] " + " ".join(f"+method@methods.{m}_tuned_fidelity={m}_tuned_fidelity"
                                                    for m in ("amcoedge", "smcoedge", "drlcoedge")),
    "+experiment=tune_ats", "+experiment=overload", "+experiment=scale", "+experiment=scale env.observation=servers +method@methods.set=ddrl_amsa_set views=[B5,B20]",
])  # fmt: skip
def test_shipped_configs_pass(overrides):
    code, lines = precheck_lines(overrides.split())
    assert code is None, lines


def test_messages_name_the_type_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"env.arrival_prob: must be a finite number in \(0, 1\].*'abc' \(a string\)"):
        validation.check_value("env.arrival_prob", "abc", validation.MEC_ENV.fields["arrival_prob"])
    with pytest.raises(ConfigError, match=r"budget.seeds: must be an integer in \[1, 10000\], got 1.5 \(a float\)"):
        validation.check_value("budget.seeds", 1.5, validation.BUDGET.fields["seeds"])


def test_every_shipped_env_key_is_in_the_schema():
    from pathlib import Path

    import yaml

    for path in (Path(__file__).resolve().parent.parent / "conf" / "env").glob("mec_*.yaml"):
        keys = set(yaml.safe_load(path.read_text())) - {"defaults"}
        assert keys <= set(validation.MEC_ENV.fields), (path.name, keys - set(validation.MEC_ENV.fields))


WRAPPER_KEYS = {"kind", "label", "action_space", "per_bs", "group_acting"}


def test_algo_configs_hold_hyper_parameters_and_every_method_composes():
    """conf/algo/ holds learners' hyper-parameters only; conf/method/ wraps each with how it
    runs (kind, action space, per-BS) and its label, and every method config is valid."""
    from pathlib import Path

    import yaml
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ddrl.run import CONFIG_DIR

    for path in (Path(CONFIG_DIR) / "algo").glob("*.yaml"):
        keys = set(yaml.safe_load(path.read_text()))
        assert not keys & WRAPPER_KEYS, (path.name, keys & WRAPPER_KEYS)
    names = sorted(path.stem for path in (Path(CONFIG_DIR) / "method").glob("*.yaml"))
    assert {"ddrl_amsa", "amcoedge", "optimal_myopic"} <= set(names)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for name in names:
            method = OmegaConf.to_container(compose(config_name="config", overrides=[f"method={name}"]).method)
            assert method["kind"] in ("agent", "scheduler"), name
            validation.check_method(f"method={name}", method)
