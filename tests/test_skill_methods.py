"""Skill discovery beyond DIAYN (issue 18): the shared skill loop (``offbench/skill_loop.py``), DADS,
METRA, RND and the uniform-random collector. Each intrinsic reward against a value computed by hand
on a tiny example, METRA's constraint and dual step, RND's normalisation, exact resume of every
trainer, seeded rollouts that leave training untouched, and the errors bad settings raise."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import offbench.envs  # noqa: F401 - registers offbench/PointPlane-v0
from baselines.skills.dads import DADSConfig, DADSTrainer, SkillDynamics, dads_reward
from baselines.skills.diayn import DIAYNConfig, DIAYNTrainer
from baselines.skills.metra import METRAConfig, METRATrainer, centred_one_hot, metra_constraint, metra_reward
from baselines.skills.registry import TRAINERS
from baselines.skills.rnd import RNDConfig, RNDTrainer, RunningMeanStd, normalised_intrinsic_reward
from baselines.skills.uniform import UniformRandomCollector
from offbench.errors import OffbenchError
from offbench.skill_loop import SkillLoopConfig, SkillSpace

SMALL = dict(hidden=(16,), batch_size=16, warmup_steps=60, buffer_size=1000)


def _plane():
    return gym.make("offbench/PointPlane-v0")


def _small(name: str, **overrides):
    trainer_class, config_class = TRAINERS[name]
    extra = {"dads": {"alternatives": 4}}.get(name, {})
    return trainer_class, config_class(**{**SMALL, **extra, **overrides})


# ---------------------------------------------------------------- the skill space
def test_skill_priors_sample_what_they_say():
    rng = np.random.default_rng(0)
    uniform = SkillSpace("uniform", 2).sample_many(rng, (500,))
    assert uniform.shape == (500, 2) and uniform.dtype == np.float32 and uniform.min() >= -1 and uniform.max() <= 1
    assert abs(uniform.mean()) < 0.05 and abs(uniform.std() - 1 / math.sqrt(3)) < 0.03
    unit = SkillSpace("unit", 3).sample_many(rng, (50,))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    categorical = SkillSpace("categorical", 4)
    assert isinstance(categorical.sample(rng), int)
    np.testing.assert_array_equal(categorical.vectors(np.array([2, 0])), [[0, 0, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(categorical.evaluation_skills(99, seed=1), [0, 1, 2, 3])
    a, b = (SkillSpace("unit", 2).evaluation_skills(5, seed=7) for _ in range(2))
    np.testing.assert_array_equal(a, b)  # evaluation skills depend on the seed only
    assert SkillSpace("none", 0).vectors(np.zeros((3, 0))).shape == (3, 0)
    # spread skills: evenly spaced directions (unit), pushed to the square's boundary (uniform)
    np.testing.assert_allclose(SkillSpace("unit", 2).spread(4, seed=0), [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-7)
    np.testing.assert_allclose(SkillSpace("uniform", 2).spread(8, seed=0)[:3], [[1, 0], [1, 1], [0, 1]], atol=1e-6)
    np.testing.assert_array_equal(SkillSpace("categorical", 3).spread(8, seed=0), [0, 1, 2])


# ---------------------------------------------------------------- DADS
def test_dads_reward_with_two_alternatives_by_hand():
    # 1-D unit Gaussians: the taken skill predicts Delta = 0.5 exactly; the two alternatives 0 and 1.5
    delta = 0.5

    def log_n(mean):
        return -0.5 * (delta - mean) ** 2 - 0.5 * math.log(2 * math.pi)

    r = dads_reward(torch.tensor([log_n(0.5)]), torch.tensor([[log_n(0.0)], [log_n(1.5)]]))
    # log q_i - log q = -0.5 (0.5 - 0)^2 = -0.125 and -0.5 (0.5 - 1.5)^2 = -0.5; z counts among the L + 1
    expected = math.log(3) - math.log(1 + math.exp(-0.125) + math.exp(-0.5))  # = 0.186720
    assert r.item() == pytest.approx(expected, abs=1e-6) and expected == pytest.approx(0.186720, abs=1e-6)
    # alternatives as likely as the skill itself: no information, reward 0; far less likely: at most log(L + 1)
    assert dads_reward(torch.tensor([-1.0]), torch.tensor([[-1.0], [-1.0]])).item() == pytest.approx(0.0, abs=1e-7)
    assert dads_reward(torch.tensor([0.0]), torch.tensor([[-80.0], [-80.0]])).item() == pytest.approx(math.log(3), abs=1e-6)


def test_skill_dynamics_is_the_mixture_it_claims():
    torch.manual_seed(0)
    model = SkillDynamics(1, 2, (8,), components=2).eval()  # eval: running statistics 0 and 1
    with torch.no_grad():
        for layer in (model.logits, model.means):
            layer.weight.zero_()
        model.logits.bias.copy_(torch.log(torch.tensor([0.25, 0.75])))
        model.means.bias.copy_(torch.tensor([-1.0, 1.0]))
    obs, next_obs = torch.tensor([[3.0], [3.0]]), torch.tensor([[3.5], [1.0]])  # Delta = 0.5 and -2
    got = model.log_prob(obs, torch.zeros(2, 2), next_obs)
    for row, delta in enumerate((0.5, -2.0)):
        d = delta / math.sqrt(1 + 1e-5)  # batch norm's epsilon
        density = sum(w * math.exp(-0.5 * (d - m) ** 2) / math.sqrt(2 * math.pi) for w, m in ((0.25, -1), (0.75, 1)))
        assert got[row].item() == pytest.approx(math.log(density), abs=1e-5)


def test_dads_update_raises_the_likelihood_and_draws_alternatives_from_the_prior():
    trainer_class, config = _small("dads", alternatives=3)
    t = trainer_class(_plane, config, seed=0)
    for _ in range(3):
        t.iterate()
    rows = [t.iterate() for _ in range(6)]
    assert rows[-1]["dynamics_loss"] < rows[0]["dynamics_loss"]  # maximum likelihood makes progress
    assert all(-1 <= v <= 1 for r in rows for v in r["skill"])  # Uniform[-1, 1]^2 skills


# ---------------------------------------------------------------- METRA
def test_metra_reward_constraint_and_centred_skills_by_hand():
    phi_s = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    phi_next = torch.tensor([[0.6, 0.8], [1.0, 1.0], [2.0, 0.0]])
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert metra_reward(phi_s, phi_next, z).tolist() == pytest.approx([0.6, 0.0, -2.0])
    # min(eps, 1 - ||phi(s) - phi(s')||^2): a unit step sits on the boundary, none has the slack, 2 breaks it
    assert metra_constraint(phi_s, phi_next, 1e-3).tolist() == pytest.approx([0.0, 1e-3, -3.0], abs=1e-6)
    np.testing.assert_allclose(centred_one_hot(torch.tensor([0, 2]), 4).numpy(),
                               [[1, -1 / 3, -1 / 3, -1 / 3], [-1 / 3, -1 / 3, 1, -1 / 3]], rtol=1e-6)


def _linear_phi(trainer, scale: float):
    trainer.phi = nn.Linear(2, 2)
    with torch.no_grad():
        trainer.phi.weight.copy_(scale * torch.eye(2))
        trainer.phi.bias.zero_()
    trainer.phi_optim = torch.optim.Adam(trainer.phi.parameters(), lr=trainer.config.phi_lr)


def _transition(obs, next_obs, skill):
    return {"obs": torch.tensor([obs]), "next_obs": torch.tensor([next_obs]), "skills": torch.tensor([skill]),
            "actions": torch.zeros(1, 2), "terminations": torch.zeros(1)}


def test_metra_dual_step_shrinks_lambda_with_slack_and_grows_it_on_violation():
    config = METRAConfig(hidden=(8,), dual_init=30.0, dual_lr=1e-4, epsilon=1e-3)
    t = METRATrainer(_plane, config, seed=0)
    _linear_phi(t, 0.1)  # a unit move in the plane moves phi by 0.1: the constraint holds with room
    start = t.dual.log_lambda.item()  # log 30 in float32
    t.intrinsic_update(_transition([0.0, 0.0], [1.0, 0.0], [1.0, 0.0]))
    # Adam's first step moves log lambda by lr * g / (|g| + 1e-8), g = E[min(eps, .)] = eps (float32: 3e-7)
    assert t.dual.log_lambda.item() - start == pytest.approx(-1e-4 * 1e-3 / (1e-3 + 1e-8), abs=3e-7)
    assert start == pytest.approx(math.log(30.0), abs=3e-7)

    t = METRATrainer(_plane, config, seed=0)
    _linear_phi(t, 10.0)  # now a unit move moves phi by 10: 1 - 100 < 0, violated
    before = torch.linalg.vector_norm(t.phi(torch.tensor([1.0, 0.0])) - t.phi(torch.tensor([0.0, 0.0]))).item()
    reward, stats = t.intrinsic_update(_transition([0.0, 0.0], [1.0, 0.0], [1.0, 0.0]))
    assert t.dual.log_lambda.item() - start == pytest.approx(1e-4, abs=3e-7)
    with torch.no_grad():
        step = t.phi(torch.tensor([[1.0, 0.0]])) - t.phi(torch.tensor([[0.0, 0.0]]))
    assert torch.linalg.vector_norm(step).item() < before  # lambda * penalty pulls the step back
    assert reward.item() == pytest.approx(step[0, 0].item(), abs=1e-6)  # the reward uses the updated phi
    assert stats["constraint"] == pytest.approx(1 - 100.0, abs=1e-3)


def test_metra_discrete_skills_see_one_hot_and_reward_centred():
    t = METRATrainer(_plane, METRAConfig(**SMALL, discrete=True, skill_dim=3), seed=0)
    np.testing.assert_array_equal(t.augment(np.zeros((1, 2)), np.array([1]))[0], [0, 0, 0, 1, 0])
    np.testing.assert_allclose(t.reward_directions(torch.tensor([1])).numpy(), [[-0.5, 1.0, -0.5]], rtol=1e-6)


# ---------------------------------------------------------------- RND
def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3, 2, (50, 2)), rng.normal(-1, 0.5, (30, 2))
    stats = RunningMeanStd((2,))
    stats.update(a)
    stats.update(b)
    both = np.concatenate([a, b])
    np.testing.assert_allclose(stats.mean, both.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, both.var(0), rtol=1e-4)


def test_rnd_reward_is_the_error_over_the_running_std_of_intrinsic_returns():
    assert normalised_intrinsic_reward(torch.tensor([2.0, 1.0]), 4.0).tolist() == pytest.approx([1.0, 0.5])
    t = RNDTrainer(_plane, RNDConfig(**SMALL, intrinsic_gamma=0.5), seed=0)
    errors = iter([1.0, 2.0, 3.0])
    t.prediction_error = lambda obs: torch.tensor([next(errors)])
    for _ in range(3):
        t.observe(np.zeros(2, np.float32), np.ones(2, np.float32))
    assert t.intrinsic_return == pytest.approx(4.25)  # R = 1, 0.5 * 1 + 2 = 2.5, 0.5 * 2.5 + 3 = 4.25
    assert float(t.return_stats.var) == pytest.approx(np.var([1.0, 2.5, 4.25]), rel=1e-3)


def test_rnd_error_whitens_and_clips_the_observation():
    t = RNDTrainer(_plane, RNDConfig(**SMALL), seed=0)
    t.obs_stats.mean, t.obs_stats.var = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    obs = torch.tensor([[3.0, 10.0]])
    x = torch.tensor([[(3.0 - 1.0) / 2.0, 5.0]])  # (10 + 2) / 0.5 = 24, clipped to 5
    with torch.no_grad():
        expected = ((t.predictor(x) - t.target(x)) ** 2).mean().item()
        assert t.prediction_error(obs).item() == pytest.approx(expected, rel=1e-5)
    t.intrinsic_update(_transition([0.0, 0.0], [3.0, 10.0], np.zeros(0, np.float32)))
    assert all(not p.requires_grad for p in t.target.parameters())  # the target stays random


# ---------------------------------------------------------------- the shared loop
@pytest.mark.parametrize("name,overrides", [("dads", {}), ("metra", {}), ("metra", {"discrete": True, "skill_dim": 4}),
                                            ("rnd", {}), ("random", {}), ("diayn", {"skills": 3})])
def test_every_trainer_resumes_exactly(tmp_path, name, overrides):
    trainer_class, config = _small(name, **overrides)
    straight = trainer_class(_plane, config, seed=2)
    rows = straight.fit(4, tmp_path / "a", checkpoint_every=1)
    trainer_class(_plane, config, seed=2).fit(2, tmp_path / "b", checkpoint_every=1)
    resumed = trainer_class(_plane, config, seed=2)
    assert resumed.fit(4, tmp_path / "b", checkpoint_every=1) == rows
    assert len(rows) == 4 and (name == "random" or "critic_loss" in rows[-1])
    modules_a, _, _ = straight.checkpointed()
    modules_b, _, _ = resumed.checkpointed()
    for key in modules_a:
        for (k, a), (_, b) in zip(modules_a[key].state_dict().items(), modules_b[key].state_dict().items()):
            assert torch.equal(a, b), (key, k)
    assert straight.extra_state() == resumed.extra_state()
    for key in straight.buffer:
        np.testing.assert_array_equal(straight.buffer[key], resumed.buffer[key])


def test_rollouts_are_seeded_and_leave_training_untouched():
    trainer_class, config = _small("metra")
    plain, probed = trainer_class(_plane, config, seed=4), trainer_class(_plane, config, seed=4)
    rows = [plain.iterate() for _ in range(3)]
    probed_rows = [probed.iterate()]
    first = probed.skill_rollouts(2, seed=11)
    probed_rows += [probed.iterate() for _ in range(2)]
    assert probed_rows == rows
    again = probed.skill_rollouts(2, seed=11)
    assert first["positions"].shape == (2 * config.eval_skills, 51, 2)
    np.testing.assert_array_equal(first["skills"], np.repeat(np.arange(config.eval_skills), 2))
    np.testing.assert_allclose(np.linalg.norm(first["skill_vectors"], axis=1), 1.0, rtol=1e-6)  # unit skills
    np.testing.assert_array_equal(again["skill_vectors"], first["skill_vectors"])
    assert not np.array_equal(again["positions"], first["positions"])  # the policy learnt in between


def test_uniform_collector_stores_uniform_actions_and_rolls_out_uniformly(tmp_path):
    collector = UniformRandomCollector(_plane, SkillLoopConfig(buffer_size=2000), seed=0)
    rows = collector.fit(20, tmp_path, checkpoint_every=5)
    assert rows[-1] == {"iteration": 20, "steps": 1000} and collector.sac is None
    actions = collector.buffer["actions"][:1000]
    assert actions.min() >= -1 and actions.max() <= 1
    assert np.abs(actions.mean(0)).max() < 0.06 and np.abs(actions.std(0) - 1 / math.sqrt(3)).max() < 0.03
    a, b = collector.skill_rollouts(3, seed=5), collector.skill_rollouts(3, seed=5)
    np.testing.assert_array_equal(a["positions"], b["positions"])
    assert a["positions"].shape == (3, 51, 2) and a["skills"].tolist() == [0, 0, 0]
    steps = np.diff(a["positions"], axis=1)
    assert np.abs(steps).max() <= 1 + 1e-6 and not np.array_equal(steps[0], steps[1])


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("make,match", [
    (lambda: DADSTrainer(_plane, DADSConfig(alternatives=0)), "alternatives must be >= 1"),
    (lambda: DADSTrainer(_plane, DADSConfig(prior="categorical")), "prior must be 'uniform' or 'gaussian'"),
    (lambda: DADSTrainer(_plane, DADSConfig(batch_size=1)), "batch_size must be >= 2"),
    (lambda: DADSTrainer(_plane, DADSConfig(dynamics_dims=(0, 5))), "not coordinates of a 2-dimensional"),
    (lambda: METRATrainer(_plane, METRAConfig(epsilon=0.0)), "epsilon must be > 0"),
    (lambda: METRATrainer(_plane, METRAConfig(discrete=True, skill_dim=1)), "skill_dim must be >= 2 for discrete"),
    (lambda: RNDTrainer(_plane, RNDConfig(intrinsic_gamma=1.0)), r"intrinsic_gamma must be in \[0, 1\)"),
    (lambda: DIAYNTrainer(_plane, DIAYNConfig(skills=1)), "skills must be >= 2"),
    (lambda: DIAYNTrainer(_plane, DIAYNConfig(hidden=())), "hidden must list at least one layer"),
    (lambda: UniformRandomCollector(_plane, SkillLoopConfig(warmup_steps=-1)), "warmup_steps must be >= 0"),
    (lambda: DIAYNTrainer(lambda: gym.make("CartPole-v1")), "DIAYN here takes Box actions"),
    (lambda: SkillSpace("beta", 2), "unknown skill prior 'beta'"),
    (lambda: SkillSpace("categorical", 1), "at least 2 skills"),
])
def test_bad_settings_raise_offbench_errors(make, match):
    with pytest.raises(OffbenchError, match=match):
        make()


def test_bad_calls_and_a_folder_of_another_run_raise(tmp_path):
    trainer_class, config = _small("dads")
    t = trainer_class(_plane, config, seed=0)
    with pytest.raises(OffbenchError, match="episodes must be >= 0"):
        t.fit(-1, tmp_path / "x")
    with pytest.raises(OffbenchError, match="per_skill must be >= 1"):
        t.skill_rollouts(0, seed=0)
    t.fit(1, tmp_path / "run")
    other = trainer_class(_plane, DADSConfig(**{**SMALL, "alternatives": 5}), seed=0)
    with pytest.raises(OffbenchError, match="holds a DADS run with other settings"):
        other.fit(2, tmp_path / "run")


# ---------------------------------------------------------------- on the point plane (slow)
def _measured(trainer, per_skill: int) -> dict:
    """The metrics of ``offbench.evaluation.skills``: the independent classifier on ``per_skill``
    seeded rollouts of every evaluation skill; coverage of 40 rollouts (40 different skills for
    continuous skills, as METRA measures it; the same rollouts otherwise); the distance from the
    origin where those 40 end; and the coverage of all the data collected in training."""
    from offbench.evaluation.skills import coverage, independent_classifier

    rollouts = trainer.skill_rollouts(per_skill, seed=123)
    positions, skills = rollouts["positions"], rollouts["skills"]
    R, T1, _ = positions.shape
    out = {"data_coverage": coverage(trainer.buffer["next_obs"][: trainer.size])}
    if len(np.unique(skills)) > 1:
        result = independent_classifier(positions[:, 1:].reshape(-1, 2), np.repeat(skills, T1 - 1),
                                        np.repeat(np.arange(R), T1 - 1))
        out.update({k: result[k] for k in ("accuracy", "chance", "mi_lower_bound", "log_k")})
    if trainer.skill_space.prior not in ("categorical", "none"):
        skills_40 = trainer.skill_space.evaluation_skills(40, seed=321)
        positions = trainer.skill_rollouts(1, seed=321, skills=skills_40)["positions"]
    assert len(positions) == 40
    out.update(coverage=coverage(positions), final_distance=float(np.linalg.norm(positions[:, -1], axis=1).mean()))
    print(type(trainer).__name__, out)
    return out


def _trained(name: str, episodes: int, **overrides):
    torch.set_num_threads(1)
    trainer_class, config_class = TRAINERS[name]
    trainer = trainer_class(_plane, config_class(**overrides), seed=0)
    for _ in range(episodes):
        trainer.iterate()
    return trainer


# Measured with these tests on a shared 2-core machine, one seed, torch on 1 thread (CPU time:
# METRA 43 s, DIAYN 40 s, DADS 105 s + 38 s system, RND 57 s): independent-classifier accuracy
# (chance 1/K) and I(S; Z) bound (ceiling log K); coverage of 40 rollouts; mean final distance from
# the origin; coverage of all training data. Uniform random: -, -, 214, 5.0, 305.
#   METRA  (150 episodes, 8 unit skills x 5): 0.73 (0.125), 1.47 (2.08), 263, 12.0, 427
#   DIAYN  (150 episodes, 10 skills x 4):     0.93 (0.10),  2.07 (2.30), 179, 10.7, 398
#   DADS   (120 episodes, L = 100, 8 x 5):    0.40 (0.125), 0.73 (2.08), 180, 13.2, 352
#   RND    (150 episodes, no skills):         -,            -,           175,  4.3, 254
@pytest.mark.slow
def test_metra_skills_on_the_point_plane():
    """150 episodes (7,500 steps): METRA's skills travel far (12.0 from the origin against uniform
    random play's 5.0), cover more of the plane (263 cells from 40 skills, random 214; its training
    data 427 against 305) and an independent classifier tells 8 of them apart (0.73, chance 0.125)."""
    metra = _measured(_trained("metra", 150), 5)
    random = _measured(_trained("random", 150), 40)
    assert metra["final_distance"] > 1.8 * random["final_distance"]
    assert metra["coverage"] > random["coverage"] and metra["data_coverage"] > 1.2 * random["data_coverage"]
    assert metra["accuracy"] > 0.5


@pytest.mark.slow
def test_diayn_measured_like_the_others():
    """150 episodes (7,500 steps), the run of ``tests/test_skills.py``: accuracy 0.93, bound 2.07;
    40 rollouts cover 179 cells (random 214); its training data 398 (random 305)."""
    diayn = _measured(_trained("diayn", 150), 4)
    assert diayn["accuracy"] > 0.7 and diayn["data_coverage"] > 350


@pytest.mark.slow
def test_dads_skills_on_the_point_plane():
    """120 episodes (6,000 steps), L = 100 alternatives (the default, the released configs'),
    the released code's reward: skills end 13.2 from the origin; the independent classifier's
    accuracy 0.40 on 8 skills (chance 0.125), bound 0.73 nats; 40 skills cover 180 cells, the
    training data 352."""
    dads = _measured(_trained("dads", 120), 5)
    assert dads["accuracy"] > 0.25 and dads["final_distance"] > 8.0


@pytest.mark.slow
def test_rnd_explores_the_point_plane():
    """150 episodes (7,500 steps). Measured, and not what one hopes: at this budget RND's data covers
    *fewer* cells than uniform random actions (254 against 305; its 40 rollouts 175 against 214), so
    only that it stays within reach of random is asserted."""
    rnd = _measured(_trained("rnd", 150), 40)
    random = _measured(_trained("random", 150), 40)
    assert rnd["data_coverage"] > 0.75 * random["data_coverage"] and rnd["coverage"] > 0.75 * random["coverage"]
