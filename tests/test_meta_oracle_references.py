"""HalfCheetahVel's measured references (offbench/envs/meta/oracle_references.py): the committed
card is the oracle checkpoint's play on the benchmark's held-out tasks, and the benchmark reads it
with clear errors when it cannot."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from offbench.data.mirrors import file_sha256
from offbench.envs.meta.benchmarks import EVAL_TASK_SEED, eval_tasks, get_benchmark
from offbench.envs.meta.oracle_references import card_path, card_references, measure_references
from offbench.errors import OffbenchError

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = "meta/cheetah-vel-v0"
CHECKPOINT = REPO / "datasets" / "policies" / "cheetah-vel" / "oracle.safetensors"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(card_path(BENCHMARK).read_text())


def test_the_card_covers_the_final_evaluation_on_the_held_out_tasks(card):
    benchmark = get_benchmark(BENCHMARK)
    assert card["benchmark"] == BENCHMARK and card["episodes"] == benchmark.episodes == 2
    assert card["eval_task_seed"] == EVAL_TASK_SEED and len(card["tasks"]) == 200  # the protocols' final evaluation
    assert card["tasks"] == eval_tasks(benchmark, 200)
    assert card["oracle"]["sha256"] == file_sha256(CHECKPOINT)  # the committed oracle made it
    assert card["oracle"]["env_id"] == "offbench/HalfCheetahVelOracle-v0"
    oracle, random = np.array(card["oracle_trial_returns"]), np.array(card["random_trial_returns"])
    assert (oracle <= 0).all() and (random <= 0).all() and (oracle > random).all()  # the oracle beats random on every task
    for tasks in (5, 50, 200):
        assert benchmark.references(tasks) == pytest.approx((random[:tasks].mean(), oracle[:tasks].mean()))


def test_the_oracle_checkpoint_replays_the_card(card):
    """The first two tasks measured again from the committed checkpoint give the card's numbers
    (MuJoCo and the policy's mean action are deterministic; a tolerance covers another CPU's float
    rounding, which a 200-step chaotic rollout can amplify)."""
    benchmark = get_benchmark(BENCHMARK)
    again = measure_references(benchmark, eval_tasks(benchmark, 2), EVAL_TASK_SEED, CHECKPOINT,
                               random_trials=card["random_trials"], seed=card["seed"])
    assert again["tasks"] == card["tasks"][:2]
    assert again["oracle_trial_returns"] == pytest.approx(card["oracle_trial_returns"][:2], rel=0.05)
    assert again["random_trial_returns"] == pytest.approx(card["random_trial_returns"][:2], rel=0.05)


def test_a_missing_short_or_foreign_card_is_refused_with_its_path(card, tmp_path, monkeypatch):
    benchmark = get_benchmark(BENCHMARK)

    def card_references_of(tasks: int, seed: int = EVAL_TASK_SEED):
        return card_references(benchmark, eval_tasks(benchmark, tasks), seed)

    catalogue = tmp_path / "catalogue"
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(catalogue))
    with pytest.raises(OffbenchError, match="references card .*not found"):
        card_references_of(5)
    path = card_path(BENCHMARK)
    path.parent.mkdir(parents=True)
    shutil.copy(REPO / "datasets" / "policies" / "cheetah-vel" / "references.json", path)
    with pytest.raises(OffbenchError, match="has references for 200 held-out tasks, 201 were asked for"):
        card_references_of(201)
    with pytest.raises(OffbenchError, match="made for eval_task_seed 1000000 and 2 episodes, the benchmark uses 7"):
        card_references_of(5, seed=7)
    path.write_text(json.dumps({**card, "tasks": [{"velocity": 1.0}] + card["tasks"][1:]}))
    with pytest.raises(OffbenchError, match="not the benchmark's held-out tasks"):
        card_references_of(5)
    gridnavi = get_benchmark("meta/gridnavi-v0")
    with pytest.raises(OffbenchError, match="has exact references"):
        measure_references(gridnavi, eval_tasks(gridnavi, 1), EVAL_TASK_SEED, CHECKPOINT)
