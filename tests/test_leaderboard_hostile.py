"""Hostile and implausible leaderboard entries (issue 14, item 2): every one is rejected with a
message naming the file, the field and the value, never with a traceback; returns must be
possible for the task; ``verify`` shows what it will import before importing anything and
refuses targets that are not Algorithm classes."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from offbench.data.catalogue import get_card, list_cards
from offbench.envs.tasks import TASKS, get_task, task_for_dataset
from offbench.leaderboard.schema import EntryError, check_entry, read_entry
from tests.test_leaderboard import board, cli, protocols, snapshot  # noqa: F401  (fixtures)

RETURN = "runs[0].evaluations[0].returns[0]"


def entry_of(board: Path) -> dict:
    return json.loads((board / "entries" / "offbench-bc.json").read_text())


def rejected(board: Path, tmp_path: Path, capsys, text: str, *needles: str) -> str:
    """Validate ``text`` as an incoming entry, then build a board holding it: both exit 2 with one
    clear error (file, needles, what to do; no traceback) and nothing is written."""
    bad = tmp_path / "incoming" / "bad.json"
    bad.parent.mkdir(exist_ok=True)
    bad.write_text(text, encoding="utf-8")
    assert cli(["leaderboard", "validate", str(bad), "--entries", str(board / "entries")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "what to do:" in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    before = snapshot(board)
    inside = board / "entries" / "zz-bad.json"
    inside.write_text(text, encoding="utf-8")
    assert cli(["leaderboard", "build", "--out", str(board)]) == 2
    assert str(inside) in capsys.readouterr().err
    inside.unlink()
    assert snapshot(board) == before
    return err


def with_change(entry: dict, change) -> str:
    entry = json.loads(json.dumps(entry))
    change(entry)
    return json.dumps(entry, ensure_ascii=False)


# ---------------------------------------------------------------------- huge numbers, deep nesting
@pytest.mark.parametrize("field, replace", [
    (RETURN, lambda e: e["runs"][0]["evaluations"][0]["returns"].__setitem__(0, 10 ** 400)),
    ("compute.workers", lambda e: e["compute"].__setitem__("workers", -10 ** 300)),
    ("config.lr", lambda e: e["config"].__setitem__("lr", 10 ** 500)),
])
def test_integers_with_hundreds_of_digits(field, replace, board, tmp_path, capsys):
    err = rejected(board, tmp_path, capsys, with_change(entry_of(board), replace), f"[{field}]", "too large")
    assert "digits" in err and len(err) < 1000  # the value is summarised, not printed in full


def test_integer_fields_are_bounded(board, tmp_path, capsys):
    def change(e):
        e["runs"][0]["evaluations"][0]["eval_seed"] = 10 ** 30
    rejected(board, tmp_path, capsys, with_change(entry_of(board), change),
             "[runs[0].evaluations[0].eval_seed]", "must lie in [0, 9223372036854775807]")


def test_integer_too_long_to_parse(board, tmp_path, capsys):
    text = json.dumps(entry_of(board)).replace('"seed": 0', '"seed": ' + "9" * 5000, 1)
    err = rejected(board, tmp_path, capsys, text, "an integer literal with 5000 digits")
    assert "set_int_max_str_digits" not in err


NESTED = {  # where a deep value sits -> what is said when the reader can parse it
    "returns": ("runs[0].evaluations[0].returns[0]", "must be a number"),
    "config": ("config.deep.a.a.a.a.a.a", "nested too deeply (6 levels at most)"),
    "compute": ("compute.deep", "must be a string, number, boolean or null"),
    "authors": ("authors[0]", "must be a non-empty string"),
}


@pytest.mark.parametrize("where", sorted(NESTED))
@pytest.mark.parametrize("depth", [500, 100_000])
def test_deeply_nested_values(where, depth, board, tmp_path, capsys):
    entry = entry_of(board)
    marker = "__deep__"
    if where == "returns":
        entry["runs"][0]["evaluations"][0]["returns"][0] = marker
    elif where == "config":
        entry["config"]["deep"] = marker
    elif where == "compute":
        entry["compute"]["deep"] = marker
    else:
        entry["authors"] = [marker]
    deep = '{"a": ' * depth + "1" + "}" * depth if where == "config" else "[" * depth + "]" * depth
    text = json.dumps(entry).replace(f'"{marker}"', deep)
    field, problem = NESTED[where]
    if depth > 10_000:  # beyond what the JSON reader can parse
        field, problem = None, "nested too deeply to read"
    err = rejected(board, tmp_path, capsys, text, problem, *([f"[{field}]"] if field else []))
    assert len(err) < 1500  # the value is elided, not printed


def test_a_hostile_neighbour_does_not_break_validate(board, tmp_path, capsys):
    """The unique-name check reads every other entry: a deeply nested one must not crash it."""
    (board / "entries" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**entry_of(board), "name": "brand-new"}))
    assert cli(["leaderboard", "validate", str(good), "--entries", str(board / "entries")]) == 0


def test_read_entry_raises_entry_errors_only(tmp_path):
    for i, text in enumerate(["[" * 50_000 + "]" * 50_000, '{"a": ' * 50_000 + "1" + "}" * 50_000,
                              '{"schema_version": 1, "runs": [' + "1" * 5000 + "]}"]):
        path = tmp_path / f"e{i}.json"
        path.write_text(text)
        with pytest.raises(EntryError):
            read_entry(path)


# ---------------------------------------------------------------------- returns possible for the task
def test_task_reward_bounds_from_gymnasium():
    """The registry's reward bounds, as derived from the Gymnasium source (tasks.py cites the files)."""
    pendulum = get_task("pendulum")
    assert pendulum.reward_bounds == (-(math.pi ** 2 + 0.1 * 8 ** 2 + 0.001 * 2 ** 2), 0.0)
    assert pendulum.reward_bounds[0] == pytest.approx(-16.2736044)
    assert pendulum.return_bounds() == pytest.approx((-3254.72088, 0.0))
    assert get_task("reacher").return_bounds() == (-math.inf, 0.0)
    assert get_task("invdoublependulum").return_bounds() == (-math.inf, 10_000.0)
    assert get_task("stitchgrid").return_bounds() == pytest.approx((-1.0, 10.0))
    for name in ("halfcheetah", "hopper", "walker2d"):  # the forward reward is the body's velocity
        assert get_task(name).return_bounds() == (-math.inf, math.inf)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_bounds_hold_in_random_play(name):
    """Episode lengths are the registered time limits, and random play stays inside the bounds."""
    task = TASKS[name]
    env = task.make()
    limit = (gym.spec(task.env_id).max_episode_steps or getattr(env.unwrapped, "max_episode_steps", None)
             or env.get_wrapper_attr("episode_length"))  # the reward-free maze's wrapper truncates its episodes
    assert task.max_episode_steps == limit and task.reward_bounds is not None, "record both in the registry"
    low, high = task.reward_bounds
    env.action_space.seed(0)
    for episode in range(2):
        env.reset(seed=episode)
        steps, done = 0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert low - 1e-6 <= reward <= high + 1e-6, (name, reward)  # float32 rewards
            steps, done = steps + 1, terminated or truncated
        assert steps <= task.max_episode_steps
    env.close()


def test_catalogue_returns_are_possible():
    """Every card's recorded dataset and reference returns lie inside its task's return bounds."""
    from offbench.leaderboard.validate import plausible_range

    for card in list_cards():
        task = task_for_dataset(card.id)
        low, high = task.return_bounds()
        # PointMaze data episodes do not end at the goal (they count the steps spent there); its
        # evaluation episodes do, and return 0 or 1: only the reference returns are evaluation returns
        data = [] if task.max_rewarded_steps is not None else [card.returns.get("min"), card.returns.get("max")]
        recorded = [*data, card.reference_scores.get("random"), card.reference_scores.get("expert")]
        returns = [float(r) for r in recorded if r is not None]
        assert all(low - 1e-6 <= r <= high + 1e-6 for r in returns), (card.id, returns)
        assert all(plausible_range(card).contains(r) for r in returns), card.id


def test_unbounded_rewards_use_reference_margins():
    """HalfCheetah's reward has no bound: the accepted range is the card's reference and dataset
    returns widened by the documented margins (a normalised score of about 300 at the top)."""
    from offbench.leaderboard.validate import SPANS_ABOVE, SPANS_BELOW, plausible_range

    card = get_card("locomotion/halfcheetah/medium-v0")
    points = [card.reference_scores["random"], card.reference_scores["expert"], card.returns["min"],
              card.returns["max"]]
    span = max(points) - min(points)
    accepted = plausible_range(card)
    assert (accepted.low, accepted.high) == pytest.approx((min(points) - SPANS_BELOW * span,
                                                           max(points) + SPANS_ABOVE * span))
    random, expert = card.reference_scores["random"], card.reference_scores["expert"]
    assert 250 < 100 * (accepted.high - random) / (expert - random) < 350
    assert accepted.high < 35_000  # today's check let 118,921 (a normalised score of 1,140) through
    pendulum = plausible_range(get_card("lite/pendulum/medium-v0"))
    assert (pendulum.low, pendulum.high) == pytest.approx((-3254.72088, 0.0), abs=1e-2)
    assert "Pendulum-v1" in pendulum.reason and "200" in pendulum.reason


def _all_returns(value):
    def change(e):
        for run in e["runs"]:
            for ev in run["evaluations"]:
                ev["returns"] = [value(r) for r in ev["returns"]]
    return change


def test_positive_pendulum_returns_are_rejected(board, tmp_path, capsys):
    err = rejected(board, tmp_path, capsys, with_change(entry_of(board), _all_returns(lambda r: 5000.0)),
                   f"[{RETURN}]", "implausible", "(got 5000.0)")
    dataset = entry_of(board)["runs"][0]["dataset"]
    assert f"{dataset} seed 0" in err and "Pendulum-v1" in err and "[-3254.72, 0]" in err


def test_normalised_scores_submitted_as_returns_are_rejected(board, tmp_path, capsys):
    entry = entry_of(board)
    card = get_card(entry["runs"][0]["dataset"])
    lo, hi = card.reference_scores["random"], card.reference_scores["expert"]

    def normalised(r):
        return round(100 * (r - lo) / (hi - lo), 3)
    first = normalised(entry["runs"][0]["evaluations"][0]["returns"][0])
    assert 30 < first < 60  # an ordinary score, not an outlier
    rejected(board, tmp_path, capsys, with_change(entry, _all_returns(normalised)),
             f"[{RETURN}]", "implausible", f"(got {first!r})", "not normalised scores")


def test_shipped_entries_still_validate():
    from offbench.leaderboard.validate import validate_file

    shipped = sorted((Path(__file__).parents[1] / "leaderboard" / "entries").glob("*.json"))
    assert shipped
    for path in shipped:
        validate_file(path, check_unique=False)


# ---------------------------------------------------------------------- names and free text
@pytest.mark.parametrize("field, change", [
    ("name", lambda e: e.update(name=e["name"] + "\n")),
    ("code_commit", lambda e: e.update(code_commit="abc1234\n")),
    ("paper", lambda e: e.update(paper="https://example.org/paper\n")),
    ("algorithm.import_path", lambda e: e["algorithm"].update(import_path="bc\n")),
])
def test_trailing_newline_fails_the_pattern(field, change, board, tmp_path, capsys):
    rejected(board, tmp_path, capsys, with_change(entry_of(board), change), f"[{field}]")


@pytest.mark.parametrize("char", ["\u0085", "\u2028", "\u2029", "\u202e", "\u2066", "\u200f", "\x7f", "\x1b",
                                  "\ufeff", "\ud800"])
@pytest.mark.parametrize("field", ["algorithm.name", "authors[0]", "compute.hardware", "compute key", "paper"])
def test_control_and_bidi_characters_are_rejected(char, field, board, tmp_path, capsys):
    def change(e):
        text = f"Ada{char}Lovelace"
        if field == "algorithm.name":
            e["algorithm"]["name"] = text
        elif field == "authors[0]":
            e["authors"] = [text]
        elif field == "compute.hardware":
            e["compute"]["hardware"] = text
        elif field == "compute key":
            e["compute"][text] = 1
        else:
            e["paper"] = f"https://example.org/{text}"
    text = json.dumps(json.loads(with_change(entry_of(board), change)))  # \\u escapes: valid UTF-8 even for U+D800
    err = rejected(board, tmp_path, capsys, text, f"U+{ord(char):04X}")
    assert char not in err


def test_joiners_in_free_text_are_kept(board):
    entry = entry_of(board)
    entry["authors"] = ["Mehr\u200cdad", "\U0001f469\u200d\U0001f52c"]  # ZWNJ (Persian), ZWJ (emoji)
    assert check_entry(entry) is entry


# ---------------------------------------------------------------------- import_path and verify
@pytest.mark.parametrize("target", ["os:system", "builtins:eval", "subprocess:Popen", "mypkg.algo:make_algo",
                                    "no_such_builtin"])
def test_non_algorithm_import_paths_are_rejected(target, board, tmp_path, capsys):
    err = rejected(board, tmp_path, capsys,
                   with_change(entry_of(board), lambda e: e["algorithm"].update(import_path=target)),
                   "[algorithm.import_path]", repr(target))
    assert "Class" in err


HOSTILE_INIT = "from pathlib import Path\nPath({marker!r}).write_text('package ran')\n"
HOSTILE_MODULE = """from pathlib import Path
Path({marker!r}).write_text('module ran')

def helper():
    pass


class {name}:
    def __init__(self, *args, **kwargs):
        Path({marker!r} + '.init').write_text('instantiated')
"""


@pytest.fixture
def hostile_package(tmp_path, monkeypatch):
    """A package ``hostilepkg`` on sys.path whose import leaves a marker file."""
    root = tmp_path / "site"
    pkg = root / "hostilepkg"
    pkg.mkdir(parents=True)
    marker = tmp_path / "ran"
    (pkg / "__init__.py").write_text(HOSTILE_INIT.format(marker=str(marker)))
    (pkg / "algo.py").write_text(HOSTILE_MODULE.format(marker=str(marker), name="NotAnAlgorithm"))
    monkeypatch.syspath_prepend(str(root))
    yield pkg, marker
    for name in [m for m in sys.modules if m == "hostilepkg" or m.startswith("hostilepkg.")]:
        del sys.modules[name]


def test_code_plan_is_made_without_importing(hostile_package):
    from offbench.leaderboard.verify import plan_code

    pkg, marker = hostile_package
    plan = plan_code("hostilepkg.algo:NotAnAlgorithm")
    assert plan.files == (str(pkg / "__init__.py"), str(pkg / "algo.py"))
    assert (plan.module, plan.class_name, plan.builtin) == ("hostilepkg.algo", "NotAnAlgorithm", False)
    text = "\n".join(plan.describe())
    assert str(pkg / "__init__.py") in text and str(pkg / "algo.py") in text and "NotAnAlgorithm" in text
    assert not marker.exists() and "hostilepkg" not in sys.modules
    builtin = plan_code("bc")
    assert builtin.builtin and builtin.module == "baselines.bc" and builtin.files[-1].endswith("bc.py")


@pytest.mark.parametrize("target, problem", [
    ("hostilepkg.algo:Missing", "does not define a class 'Missing'"),
    ("hostilepkg.nothere:Algo", "cannot find module 'hostilepkg.nothere'"),
])
def test_code_plan_refuses_before_importing(target, problem, hostile_package):
    from offbench.errors import OffbenchError
    from offbench.leaderboard.verify import plan_code

    _, marker = hostile_package
    with pytest.raises(OffbenchError, match=problem):
        plan_code(target)
    assert not marker.exists() and "hostilepkg" not in sys.modules


def _entry_with(board: Path, tmp_path: Path, import_path: str) -> Path:
    path = tmp_path / "hostile-entry.json"
    path.write_text(with_change(entry_of(board), lambda e: e["algorithm"].update(import_path=import_path)))
    return path


def test_verify_shows_every_file_before_importing(board, tmp_path, hostile_package, monkeypatch, capsys):
    import offbench.reproduce

    pkg, marker = hostile_package
    monkeypatch.setattr(offbench.reproduce, "execute_run", lambda spec: pytest.fail("ran without confirmation"))
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    path = _entry_with(board, tmp_path, "hostilepkg.algo:NotAnAlgorithm")
    assert cli(["leaderboard", "verify", str(path), "--seeds", "1"]) == 2
    out = capsys.readouterr().out
    assert str(pkg / "__init__.py") in out and str(pkg / "algo.py") in out and "NotAnAlgorithm" in out
    assert not marker.exists() and "hostilepkg" not in sys.modules


def test_verify_refuses_a_class_that_is_not_an_algorithm(board, tmp_path, hostile_package, monkeypatch, capsys):
    """After confirmation the module is imported, but a class without the Algorithm protocol is
    never instantiated or run."""
    import offbench.reproduce

    _, marker = hostile_package
    monkeypatch.setattr(offbench.reproduce, "execute_run", lambda spec: pytest.fail("ran a non-algorithm"))
    path = _entry_with(board, tmp_path, "hostilepkg.algo:NotAnAlgorithm")
    assert cli(["leaderboard", "verify", str(path), "--seeds", "1", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "not an Algorithm" in err and "update" in err and "Traceback" not in err
    assert marker.exists() and not Path(str(marker) + ".init").exists()
