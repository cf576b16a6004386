"""The policy zoo: a dataset's set of target policies with ground-truth values, for OPE studies.

``ZOO_DIR/DATASET_SLUG/`` holds ``manifest.json`` and ``policies/NAME/`` per policy:

- trained baseline runs found under ``RESULTS_DIR/runs/ALGO/DATASET_SLUG/seedS`` of one or more
  results directories (every run whose ``config.json`` names the dataset): the run's
  ``checkpoint.safetensors``, ``checkpoint.json`` and ``config.json`` are copied;
- behaviour policies of the task: the recipe policies of every catalogue card with the
  dataset's environment (so a medium-expert card contributes its sources' medium and expert
  checkpoints) and every behaviour checkpoint under ``CATALOGUE/policies/*/`` recorded for the
  same environment; stored as ``spec.json`` (a checkpoint by catalogue path and sha256).
  StitchGrid's route behaviour is not Markov in the cell, so it enters as its two Markov
  routes (route A everywhere, route B everywhere); deterministic scripted controllers
  (``pendulum_swingup``) have no log-probabilities and are left out.

The policy that is evaluated is the **stochastic** policy, the one OPE estimators read
(importance sampling needs log-probabilities of the policy whose value is the truth): a
trained run through :class:`offbench.evaluation.ope.AlgorithmPolicy` (its Gaussian /
categorical head; a deterministic head as N(pi(s), (0.1 * action_scale)^2)), a behaviour
policy by its own sampler. Ground truth: ``episodes`` online episodes (default 50), episode i
reset with seed ``TRUTH_SEED + i`` (the same seeds for every policy, far from training and
training-evaluation seeds), recording the undiscounted and the discounted (``gamma``,
default 0.99) return: mean and standard error. Rebuilding is resumable: a policy whose
truth was measured with the same episodes, seed and gamma is skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from offbench.atomic import write_atomic
from offbench.errors import OffbenchError

DEFAULT_EPISODES = 50
DEFAULT_GAMMA = 0.99
TRUTH_SEED = 900_000_000  # episode i: TRUTH_SEED + i; training evaluations use 50M + ..., recipes small seeds
RUN_FILES = ("checkpoint.safetensors", "checkpoint.json", "config.json")
EVALUATED_POLICY = ("stochastic: trained runs through ope.AlgorithmPolicy (sampled actions; deterministic heads as "
                    "N(pi(s), (0.1 * action_scale)^2)), behaviour policies by their own sampler")


def dataset_slug(dataset_id: str) -> str:
    from offbench.evaluation.results import dataset_slug as slug

    return slug(dataset_id)


def zoo_path(zoo_dir: str | os.PathLike, dataset_id: str) -> Path:
    return Path(zoo_dir) / dataset_slug(dataset_id)




def _short_hash(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


# ====================================================================== behaviour policies as target policies
class UniformTarget:
    """The uniform random policy as a target policy (Box: uniform on the box; Discrete: 1/n)."""

    def __init__(self, action_space):
        import gymnasium as gym

        self.space = action_space
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.n_actions = int(action_space.n)
        else:
            if not action_space.is_bounded():
                raise OffbenchError("uniform_random needs a bounded Box action space")
            self.low, self.high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
            self._log_density = float(-np.sum(np.log(self.high - self.low)))

    def probabilities(self, observations) -> np.ndarray:
        return np.full((len(np.asarray(observations)), self.n_actions), 1.0 / self.n_actions)

    def log_prob(self, observations, actions) -> np.ndarray:
        n = len(np.asarray(actions))
        return np.full(n, -np.log(self.n_actions) if self.discrete else self._log_density)

    def sample(self, observations, rng: np.random.Generator) -> np.ndarray:
        n = len(np.asarray(observations))
        if self.discrete:
            return (int(self.space.start) + rng.integers(self.n_actions, size=n)).astype(np.int64)
        return rng.uniform(self.low, self.high, size=(n, *self.low.shape)).astype(self.space.dtype)


class CheckpointTarget:
    """A behaviour checkpoint (``offbench.behaviour.CheckpointPolicy``'s network) as a target policy:
    its squashed-Gaussian log-density and sampler, on raw observations like the collector."""

    def __init__(self, path: Path, sha256: str | None = None):
        from offbench.behaviour import CheckpointPolicy

        self.policy = CheckpointPolicy(path, sha256=sha256)
        self.network = self.policy.network

    def log_prob(self, observations, actions) -> np.ndarray:
        import torch

        with torch.no_grad():
            obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
            act = torch.as_tensor(np.asarray(actions), dtype=torch.float32)
            return self.network.log_prob(obs, act).double().numpy()

    def sample(self, observations, rng: np.random.Generator) -> np.ndarray:
        import torch

        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
            return self.network(obs, False, generator)[0].numpy()


def behaviour_target(spec: dict, action_space):
    """A target policy from a zoo behaviour spec (see :func:`behaviour_specs`)."""
    from offbench.evaluation.ope import TabularPolicy

    kind = spec.get("kind")
    if kind == "uniform_random":
        return UniformTarget(action_space)
    if kind == "checkpoint":
        from offbench.data.catalogue import catalogue_dir

        return CheckpointTarget(catalogue_dir() / spec["path"], spec.get("sha256"))
    if kind == "stitchgrid_optimal":
        from offbench.envs.gridworld import EpsilonGreedyPolicy

        return TabularPolicy(EpsilonGreedyPolicy(None, spec.get("epsilon", 0.1)).action_probability_table(),
                             name="stitchgrid_optimal")
    if kind == "stitchgrid_route":
        from offbench.envs import gridworld

        route = {"A": gridworld.ROUTE_A, "B": gridworld.ROUTE_B}.get(spec.get("route"))
        if route is None:
            raise OffbenchError(f"stitchgrid_route spec needs route 'A' or 'B', got {spec!r}")
        return TabularPolicy(gridworld._epsilon_mix(route, float(spec.get("epsilon", 0.1))), name=f"route_{spec['route']}")
    raise OffbenchError(f"zoo behaviour spec of unknown kind {kind!r}: {spec!r}")


def _canonical_behaviour(policy: Any, catalogue: Path) -> list[tuple[str, dict]]:
    """(name, spec) of the zoo entries a recipe's ``policy`` value contributes."""
    kind = policy if isinstance(policy, str) else (policy or {}).get("kind")
    params = {} if isinstance(policy, str) else dict(policy)
    if kind == "uniform_random":
        return [("behaviour-uniform_random", {"kind": "uniform_random"})]
    if kind == "checkpoint":
        path = Path(params["path"])
        return [(f"behaviour-{path.parent.name}-{path.stem}",
                 {"kind": "checkpoint", "path": path.as_posix(), "sha256": params.get("sha256")})]
    if kind == "stitchgrid_optimal":
        eps = float(params.get("epsilon", 0.1))
        return [(f"behaviour-stitchgrid_optimal-eps{eps:g}", {"kind": "stitchgrid_optimal", "epsilon": eps})]
    if kind == "stitchgrid_routes":  # not Markov in the cell: its two Markov routes instead
        eps = float(params.get("epsilon", 0.1))
        return [(f"behaviour-route_{r}-eps{eps:g}", {"kind": "stitchgrid_route", "route": r, "epsilon": eps})
                for r in ("A", "B")]
    return []  # deterministic scripted controllers, unknown kinds: no log-probabilities


def behaviour_specs(dataset_id: str, env_id: str) -> list[tuple[str, dict]]:
    """Behaviour policies of the task: recipe policies of every card with ``env_id`` and every
    behaviour checkpoint recorded for ``env_id`` under ``CATALOGUE/policies/``."""
    from offbench.data.catalogue import catalogue_dir, list_cards
    from offbench.data.mirrors import file_sha256

    catalogue = catalogue_dir()
    found: dict[str, dict] = {}
    for card in list_cards():
        if card.env_id == env_id and "policy" in card.recipe:
            for name, spec in _canonical_behaviour(card.recipe["policy"], catalogue):
                found.setdefault(name, spec)
    for sidecar in sorted((catalogue / "policies").glob("*/*.json")):
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        weights = sidecar.with_suffix(".safetensors")
        if info.get("env_id") == env_id and "module" in info and weights.is_file():
            rel = weights.relative_to(catalogue).as_posix()
            for name, spec in _canonical_behaviour({"kind": "checkpoint", "path": rel}, catalogue):
                if name not in found:
                    found[name] = {**spec, "sha256": file_sha256(weights)}
    return sorted(found.items())


# ====================================================================== trained runs
def load_run_algorithm(run_dir: str | os.PathLike, dataset=None):
    """Rebuild a training run's algorithm from its directory (as ``offbench eval`` does):
    returns ``(algorithm in eval mode, checkpoint step, config.json)``. ``prepare`` (which
    may fit a dynamics model) runs only if the checkpoint needs modules it creates."""
    from offbench.checkpoint import load_checkpoint
    from offbench.data import load_dataset
    from offbench.train import build_algorithm

    run_dir = Path(run_dir)
    for name in ("config.json", "checkpoint.json"):
        if not (run_dir / name).is_file():
            raise OffbenchError(f"{run_dir} has no {name}; is it an `offbench train` run directory?")
    config = json.loads((run_dir / "config.json").read_text())
    if dataset is None:
        dataset = load_dataset(config["dataset"]["id"])
    if dataset.content_sha256() != config["dataset"]["content_sha256"]:
        raise OffbenchError(f"{run_dir}/config.json: the run trained on a different version of "
                            f"{config['dataset']['id']} (content_sha256 differs)")
    algorithm = build_algorithm(config["algorithm"], dataset, config["algorithm_overrides"], config["train"]["seed"])
    try:
        meta = load_checkpoint(run_dir / "checkpoint", modules={"algorithm": algorithm})
    except RuntimeError:  # modules created in prepare (e.g. DT's timestep embedding)
        algorithm.prepare(dataset)
        meta = load_checkpoint(run_dir / "checkpoint", modules={"algorithm": algorithm})
    return algorithm.eval(), int(meta["step"]), config


def find_runs(dataset_id: str, results_dirs) -> list[Path]:
    """Run directories with a checkpoint whose config names ``dataset_id``, in every results dir."""
    slug = dataset_slug(dataset_id)
    runs = []
    for results in results_dirs:
        results = Path(results)
        if not (results / "runs").is_dir():
            raise OffbenchError(f"{results} has no runs/ directory; is it a results directory of "
                                "`offbench reproduce` (RESULTS_DIR/runs/ALGO/DATASET_SLUG/seedS)?")
        for run in sorted((results / "runs").glob(f"*/{slug}/seed*")):
            if (run / "checkpoint.json").is_file() and (run / "config.json").is_file():
                config = json.loads((run / "config.json").read_text())
                if config.get("dataset", {}).get("id") == dataset_id:
                    runs.append(run)
    return runs


def run_entry_name(config: dict, step: int) -> str:
    algo = str(config["algorithm"]).replace(":", "_").replace("/", "_").replace(".", "_")
    key = {"settings": config.get("algorithm_overrides"), "train": config.get("train"), "step": step,
           "dataset": config["dataset"].get("content_sha256")}
    return f"{algo}-seed{config['train']['seed']}-{_short_hash(key)}"


# ====================================================================== ground truth
def ground_truth(policy, env_id: str, *, episodes: int = DEFAULT_EPISODES, gamma: float = DEFAULT_GAMMA,
                 seed: int = TRUTH_SEED, policy_seed: int = 0, dataset=None) -> dict:
    """Online value of a target policy's stochastic actions: ``episodes`` episodes, episode i
    reset with ``seed + i``; undiscounted and ``gamma``-discounted returns, mean and stderr."""
    from offbench.rollout import rollout

    rng = np.random.default_rng(policy_seed)
    result = rollout(lambda obs: policy.sample(obs, rng), env_id, episodes, seed=seed, gamma=gamma)
    disc = result.discounted_returns
    n = len(disc)
    truth = {"episodes": episodes, "seed": seed, "policy_seed": policy_seed, "gamma": gamma,
             "return_mean": result.mean, "return_stderr": result.stderr,
             "discounted_mean": float(disc.mean()),
             "discounted_stderr": float(disc.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
             "mean_length": float(result.lengths.mean()),
             "returns": [round(float(r), 6) for r in result.returns],
             "discounted_returns": [round(float(r), 6) for r in disc]}
    if dataset is not None and dataset.metadata.reference_scores:
        truth["normalized_score"] = float(dataset.normalized_score(result.returns).mean())
    return truth


def truth_value(entry: dict, gamma: float) -> tuple[float, float]:
    """(value, stderr) of a zoo entry matching an OPE ``gamma``: discounted if gamma < 1, else undiscounted."""
    truth = entry["truth"]
    if gamma >= 1.0:
        return truth["return_mean"], truth["return_stderr"]
    if abs(truth["gamma"] - gamma) > 1e-12:
        raise OffbenchError(f"zoo policy {entry['name']} has discounted truth for gamma {truth['gamma']}, not {gamma}; "
                            "rebuild the zoo with --gamma or use the same --gamma")
    return truth["discounted_mean"], truth["discounted_stderr"]


# ====================================================================== building and loading
def build_zoo(dataset_id: str, results_dirs=(), zoo_dir: str | os.PathLike = "zoo", *,
              episodes: int = DEFAULT_EPISODES, gamma: float = DEFAULT_GAMMA, seed: int = TRUTH_SEED,
              behaviour: bool = True, seeds: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Collect and evaluate the zoo of ``dataset_id`` into ``ZOO_DIR/DATASET_SLUG`` (resumable).
    ``seeds``: only runs with training seed below it join (a smaller zoo: 10 algorithms x 1 seed
    span the values as well as x 3, at a third of the OPE cost)."""
    import torch

    from offbench.data import load_dataset
    from offbench.data.recipes import ensure_built
    from offbench.evaluation.ope import AlgorithmPolicy

    if episodes < 2:
        raise OffbenchError(f"--episodes must be at least 2 (a standard error needs two), got {episodes}")
    if seeds is not None and seeds < 1:
        raise OffbenchError(f"--seeds must be at least 1, got {seeds}")
    if not 0.0 <= gamma <= 1.0:
        raise OffbenchError(f"--gamma must be in [0, 1], got {gamma}")
    torch.set_num_threads(1)
    ensure_built(dataset_id, progress=False)
    dataset = load_dataset(dataset_id)
    env_id = dataset.metadata.env_id
    root = zoo_path(zoo_dir, dataset_id)
    (root / "policies").mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    old = {p["name"]: p for p in manifest.get("policies", [])}
    manifest.update({"dataset": dataset_id, "env_id": env_id, "dataset_content_sha256": dataset.content_sha256(),
                     "evaluated_policy": EVALUATED_POLICY,
                     "truth_protocol": {"episodes": episodes, "seed": seed, "gamma": gamma,
                                        "episode_seeds": f"{seed} + i for episode i (the same for every policy)"}})
    entries: dict[str, dict] = dict(old)
    skipped = dict(manifest.get("skipped", {}))

    def same_truth(entry):
        t = entry.get("truth") or {}
        return t.get("episodes") == episodes and t.get("seed") == seed and t.get("gamma") == gamma

    def save():
        manifest["policies"] = sorted(entries.values(), key=lambda e: e["name"])
        manifest["skipped"] = skipped
        write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    todo: list[tuple[dict, Callable[[], Any]]] = []
    for run in find_runs(dataset_id, results_dirs):
        config = json.loads((run / "config.json").read_text())
        if seeds is not None and int(config["train"]["seed"]) >= seeds:
            continue
        step = int(json.loads((run / "checkpoint.json").read_text())["step"])
        name = run_entry_name(config, step)
        entry = {"name": name, "source": "run", "algorithm": config["algorithm"],
                 "settings": config.get("algorithm_overrides", {}), "seed": config["train"]["seed"], "step": step,
                 "train_steps": config["train"].get("steps"), "run_dir": str(run.resolve()),
                 "files": [f"policies/{name}/{f}" for f in RUN_FILES]}
        if name in entries and same_truth(entries[name]):
            continue
        target = root / "policies" / name
        target.mkdir(parents=True, exist_ok=True)
        for f in RUN_FILES:
            shutil.copy2(run / f, target / f)
        todo.append((entry, lambda target=target: AlgorithmPolicy(load_run_algorithm(target, dataset)[0])))
    if behaviour:
        for name, spec in behaviour_specs(dataset_id, env_id):
            entry = {"name": name, "source": "behaviour", "spec": spec, "files": [f"policies/{name}/spec.json"]}
            if name in entries and same_truth(entries[name]):
                continue
            (root / "policies" / name).mkdir(parents=True, exist_ok=True)
            write_atomic(root / "policies" / name / "spec.json", json.dumps(spec, indent=2, sort_keys=True))
            todo.append((entry, lambda spec=spec: behaviour_target(spec, dataset.action_space)))
    log(f"zoo {root}: {len(entries)} policies evaluated earlier, {len(todo)} to evaluate "
        f"({episodes} episodes each)")
    for entry, make in todo:
        started = time.perf_counter()
        try:
            policy = make()
        except OffbenchError as exc:  # e.g. a Decision Transformer: no per-step policy head
            skipped[entry["name"]] = str(exc)
            log(f"  skipped {entry['name']}: {exc}")
            save()
            continue
        policy_seed = int(hashlib.sha1(entry["name"].encode()).hexdigest()[:8], 16)
        entry["truth"] = ground_truth(policy, env_id, episodes=episodes, gamma=gamma, seed=seed,
                                      policy_seed=policy_seed, dataset=dataset)
        entry["truth"]["seconds"] = round(time.perf_counter() - started, 2)
        entries[entry["name"]] = entry
        skipped.pop(entry["name"], None)
        log(f"  {entry['name']}: return {entry['truth']['return_mean']:.4g} ± {entry['truth']['return_stderr']:.2g}, "
            f"discounted {entry['truth']['discounted_mean']:.4g} ± {entry['truth']['discounted_stderr']:.2g}")
        save()
    save()
    return manifest


def load_zoo(zoo_dir: str | os.PathLike, dataset_id: str) -> dict:
    """The manifest of a dataset's zoo (an error naming the path if there is none)."""
    path = zoo_path(zoo_dir, dataset_id) / "manifest.json"
    if not path.is_file():
        raise OffbenchError(f"no zoo for {dataset_id}: {path} does not exist (build it with "
                            f"`offbench ope zoo {dataset_id} --from RESULTS_DIR --out {zoo_dir}`)")
    manifest = json.loads(path.read_text())
    if not manifest.get("policies"):
        raise OffbenchError(f"{path} lists no evaluated policies")
    return manifest


def zoo_policy(zoo_dir: str | os.PathLike, entry: dict, dataset):
    """The target policy of one zoo entry (trained runs are rebuilt from the copied checkpoint)."""
    from offbench.evaluation.ope import AlgorithmPolicy

    if entry["source"] == "run":
        algorithm = load_run_algorithm(zoo_path(zoo_dir, dataset.metadata.dataset_id) / "policies" / entry["name"],
                                       dataset)[0]
        return AlgorithmPolicy(algorithm, name=entry["name"])
    return behaviour_target(entry["spec"], dataset.action_space)


__all__ = ["CheckpointTarget", "DEFAULT_EPISODES", "DEFAULT_GAMMA", "TRUTH_SEED", "UniformTarget", "behaviour_specs",
           "behaviour_target", "build_zoo", "find_runs", "ground_truth", "load_run_algorithm", "load_zoo",
           "truth_value", "zoo_path", "zoo_policy"]
