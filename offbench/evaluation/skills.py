"""Skill metrics that the agent cannot game (issue 18, item 3): measured on the skills' rollouts by
code the agent never trains.

- :func:`coverage`: the number of distinct 1 x 1 cells of the x-y plane visited (METRA's state
  coverage, Park et al. 2024), from a fixed number of rollouts.
- :func:`independent_classifier`: skill distinguishability by an *independent* classifier
  (scikit-learn logistic regression on the visited states, trained on half of the rollouts and
  tested on the other half, split by rollout so that no trajectory is in both), never by the agent's
  own discriminator: its held-out accuracy (chance = 1 / K), and the lower bound on the mutual
  information it gives, I(S; Z) >= H(Z) + E[log q(z | s)] = log K + E[log q(z | s)] (in nats, the
  variational bound of Barber & Agakov 2003 that DIAYN's objective uses), against its ceiling log K.
  The bound holds for *any* conditional distribution q, so q here is the classifier mixed with the
  uniform distribution, q = (1 - eps) q_clf + eps / K with eps = ``SMOOTHING`` = 0.05, fixed in
  advance: a classifier fitted on a few rollouts is over-confident, and one held-out state it gets
  confidently wrong would otherwise pull the bound towards minus infinity (the first skills table,
  made with q = q_clf, showed -8 to -11 nats where the accuracy was 0.5-0.75). Each state's term is
  then at least log(eps / K), so the bound lies in [log eps, log K + log(1 - eps + eps / K)].
"""
from __future__ import annotations

import numpy as np

from offbench.errors import OffbenchError

SMOOTHING = 0.05  # weight of the uniform distribution in the bound's q (module docstring)


def coverage(positions: np.ndarray, cell: float = 1.0) -> int:
    """Distinct cells of width ``cell`` among ``positions`` [..., d]: 1 x 1 cells of the x-y plane for
    d = 2 (METRA's measure), bins of one coordinate for d = 1 (HalfCheetah's x velocity)."""
    points = np.asarray(positions, np.float64)
    points = points.reshape(-1, points.shape[-1])
    return int(len(np.unique(np.floor(points / cell).astype(np.int64), axis=0)))


def independent_classifier(states: np.ndarray, skills: np.ndarray, rollouts: np.ndarray, seed: int = 0) -> dict:
    """``states`` [N, d] visited, ``skills`` [N] the skill of each, ``rollouts`` [N] which rollout each
    came from. Returns held-out ``accuracy``, ``chance``, ``mi_lower_bound`` and ``log_k`` (nats).
    A training half that holds one skill only (possible with two skills and few rollouts) gives the
    constant classifier: accuracy = the share of that skill among the test states, q_clf = 1 on it and
    0 elsewhere (the smoothed q gives every skill at least eps / K, as for a skill never trained on)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    from sklearn.pipeline import make_pipeline

    states, skills, rollouts = np.asarray(states, np.float64), np.asarray(skills), np.asarray(rollouts)
    ids = np.unique(rollouts)
    if len(ids) < 2:
        raise OffbenchError("the independent classifier needs at least two rollouts (one to train, one to test)")
    rng = np.random.default_rng(seed)
    test_ids = rng.choice(ids, len(ids) // 2, replace=False)
    test = np.isin(rollouts, test_ids)
    k = len(np.unique(skills))
    trained = np.unique(skills[~test])
    if len(trained) == 1:  # the training half saw one skill (few rollouts): it predicts that one, surely
        hit = skills[test] == trained[0]
        log_q, accuracy = np.where(hit, 0.0, -np.inf), float(np.mean(hit))
    else:
        model = make_pipeline(PolynomialFeatures(2), StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(states[~test], skills[~test])
        log_probs = model.predict_log_proba(states[test])
        classes = list(model.classes_)
        index = np.array([classes.index(z) if z in classes else -1 for z in skills[test]])
        known = index >= 0
        log_q = np.where(known, log_probs[np.arange(len(index)), np.maximum(index, 0)], -np.inf)
        accuracy = float(np.mean(model.predict(states[test]) == skills[test]))
    log_q = np.logaddexp(np.log1p(-SMOOTHING) + log_q, np.log(SMOOTHING / k))  # q = (1 - eps) q_clf + eps / K
    return {"accuracy": accuracy, "chance": 1.0 / k, "mi_lower_bound": float(np.log(k) + np.mean(log_q)),
            "log_k": float(np.log(k)), "train_states": int((~test).sum()), "test_states": int(test.sum())}
