"""Data selection of the demo (no fitting: the demo itself runs in `make demo`)."""

from __future__ import annotations

import numpy as np

from bayescale.demo import (
    HITCHHIKER_FAMILIES,
    WARMUP_TOKENS,
    held_out_targets,
    language_data,
    routing_data,
)


def test_language_data_holds_out_each_familys_largest_model():
    train, held = language_data(per_run=10)
    assert set(train["family"]) == {"olmo-ladder", *HITCHHIKER_FAMILIES}
    assert train["tokens"].min() >= WARMUP_TOKENS
    assert train.groupby("run").size().max() <= 10
    assert held.loc[held["family"] == "olmo-ladder", "params"].unique().size == 1
    assert held.loc[held["family"] == "olmo-ladder", "params"].iloc[0] > 3e9
    for fam, g in held.groupby("family"):
        assert g["params"].min() > train.loc[train["family"] == fam, "params"].max()
    assert not set(train["run"]) & set(held["run"])
    targets = held_out_targets(held)
    assert len(targets) == held["run"].nunique()
    final = held.groupby("run")["tokens"].max()
    assert np.allclose(np.sort(targets["tokens"]), np.sort(final.to_numpy()))


def test_late_checkpoints_are_the_tail_of_each_run():
    train, _ = language_data("late", per_run=5)
    assert train.groupby("run").size().max() <= 5


def test_routing_data_one_family_per_config_with_archs():
    runs = routing_data(per_run=6)
    assert set(runs["arch"]) == {"Dense", "S-Base", "Hash", "RL-R"}
    assert runs.groupby("family")["arch"].nunique().max() == 1
    assert runs["params"].max() > 1.3e9
