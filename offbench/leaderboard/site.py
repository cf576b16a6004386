"""Render the board: ``README.md`` (Markdown), the static ``site/index.html`` and its SVG figures.

Every submitted text is escaped (``html.escape`` for HTML, plus Markdown's specials for the
README); links are shown only for http(s) URLs; the page's one inline script (table sorting,
vanilla JS) is pinned by a Content-Security-Policy hash, so injected markup could not run even if
it got through. Output is deterministic: sorted entries, no timestamps, SVG metadata stripped.

Scores are normalised with each dataset's own reference returns. A group whose datasets' tasks
D4RL also has gets a second, labelled section with the same runs normalised with D4RL's reference
returns (``EntryScores.d4rl``), for comparison with papers; the ranking never uses it. A meta-suite
group's scores are normalised trial returns (``offbench.evaluation.report.META_UNIT``), listed with
each benchmark's random and reference trial returns; an entry of an algorithm the protocol runs on
some of its benchmarks only is shown, unranked, below the ranked ones. A skills-suite group is one
environment of a skills protocol: its scores are coverage in cells (``offbench.evaluation.skill_report.SKILL_UNIT``),
shown beside the independent classifier's accuracy and its chance, with uniform random actions marked
as the reference.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from offbench.evaluation.colors import assign_colors
from offbench.evaluation.literature import D4RL_TITLE, d4rl_reference
from offbench.evaluation.report import META_UNIT
from offbench.evaluation.results import SUCCESS_UNIT, success_scored
from offbench.evaluation.skill_report import SKILL_UNIT
from offbench.leaderboard.schema import URL_PATTERN


@dataclass
class Group:
    """One table: the entries of a suite under one protocol, ranked by IQM."""

    key: str  # "suite--protocol", safe as a file name and an HTML id
    suite: str
    protocol: Any
    rows: list[tuple[dict, Any]]  # (entry, EntryScores), ranked

    @property
    def datasets(self) -> list[str]:
        return list(self.protocol.datasets)

    @property
    def meta(self) -> bool:
        """A meta-suite table: its protocol names benchmarks (``offbench.envs.meta.benchmarks``)."""
        return self.protocol.suite == "meta"

    @property
    def skills(self) -> bool:
        """A skills-suite table: one environment (``offbench.envs.skill_environments``) of a skills protocol."""
        return self.protocol.suite == "skills"

    @property
    def item(self) -> str:
        """What the table's columns of runs are: ``benchmark`` (meta suite), ``environment`` (skills
        suite) or ``dataset``."""
        return "benchmark" if self.meta else "environment" if self.skills else "dataset"

    @property
    def title(self) -> str:
        """The table's heading (plain text): suite and protocol, and a skills table's environment."""
        title = f"Suite {self.suite}, protocol {self.protocol.name}"
        return title + (f", environment {self.datasets[0]}" if self.skills else "")

    @property
    def ranks(self) -> list[int | None]:
        """Standard competition ranks (1, 2, 2, 4) of the rows: IQMs equal as shown share a rank.
        Entries that ran only some of the protocol's datasets (listed last) have none."""
        ranked = [fmt(s.iqm) for _, s in self.rows if s.complete]
        return competition_ranks(ranked) + [None] * (len(self.rows) - len(ranked))

    @property
    def unranked(self) -> list[tuple[dict, Any]]:
        """The rows without a rank: algorithms the protocol runs on some of its datasets only."""
        return [(entry, s) for entry, s in self.rows if not s.complete]

    @property
    def d4rl_datasets(self) -> list[str]:
        """The datasets scored on D4RL's scale too (every entry of a group has the same ones)."""
        scores = self.rows[0][1] if self.rows else None
        return list(scores.d4rl.datasets) if scores is not None and scores.d4rl is not None else []

    @property
    def score_label(self) -> str:
        """What the table's scores are: ``normalised trial return`` on a meta-suite table (``offbench
        report``'s label), ``coverage (cells)`` on a skills-suite table, ``success rate (%)`` where every
        dataset's normalised score is a success percentage (the goal suite), else ``normalised score``."""
        if self.meta:
            return META_UNIT
        if self.skills:
            return SKILL_UNIT
        return SUCCESS_UNIT if self.datasets and all(success_scored(d) for d in self.datasets) else "normalised score"

    @property
    def colors(self) -> dict[str, str]:
        """``{entry name: colour}``: each entry in its algorithm's colour, as in ``offbench report``."""
        return assign_colors([entry["name"] for entry, _ in self.rows],
                             {entry["name"]: entry["algorithm"]["import_path"] for entry, _ in self.rows})


def competition_ranks(keys: list) -> list[int]:
    """Ranks of already sorted ``keys``: equal neighbours share the first one's rank (1, 2, 2, 4)."""
    ranks: list[int] = []
    for i, key in enumerate(keys):
        ranks.append(ranks[-1] if i and key == keys[i - 1] else i + 1)
    return ranks


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def mean_se(scores) -> str:
    """A per-dataset cell: mean ± standard error over seeds (``offbench report``'s cell too); ``-``
    where the entry has no runs on the dataset (its algorithm is restricted to others)."""
    if scores is None:
        return "-"
    return fmt(scores.mean) + (f" ± {fmt(scores.stderr)}" if len(scores.scores) > 1 else "")


def sort_value(value: float | None) -> str:
    return "" if value is None else repr(round(float(value), 6))


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_MD_SPECIALS = re.compile(r"([\\`*_{}\[\]()!|~])")


def md(text: Any) -> str:
    """Submitted text as inert Markdown table content: HTML escaped, Markdown specials backslashed."""
    return _MD_SPECIALS.sub(r"\\\1", html.escape(str(text), quote=True))


def safe_url(value: Any) -> str | None:
    return value if isinstance(value, str) and URL_PATTERN.match(value) else None


def selection_text(entry: dict) -> str:
    sel = entry["hyperparameter_selection"]
    return "offline" if sel["kind"] == "offline" else f"online ({sel['budget']})"


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, comments or JS line breaks)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


# ---------------------------------------------------------------------- figures
# Fonts are fixed when text is created and the hash salt when a figure is saved: both happen inside it.
FIGURE_STYLE = {"svg.hashsalt": "offbench-leaderboard", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                "font.size": 9}


def iqm_figure(group: Group):
    """Horizontal bars of each ranked entry's IQM with its 95% interval, in the entry's colour;
    ``None`` when no entry has an IQM (no normalised dataset)."""
    import matplotlib
    from matplotlib.figure import Figure

    ranked = [(entry, s) for entry, s in group.rows if s.iqm is not None and s.complete]
    if not ranked:
        return None
    colors = group.colors
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(6.4, 0.45 * len(ranked) + 1.0), layout="constrained")
        ax = fig.add_subplot()
        ys = list(range(len(ranked)))[::-1]
        errs = [[s.iqm - s.ci[0] for _, s in ranked], [s.ci[1] - s.iqm for _, s in ranked]]
        ax.barh(ys, [s.iqm for _, s in ranked], xerr=errs, color=[colors[entry["name"]] for entry, _ in ranked],
                ecolor="#222222", capsize=3)
        ax.set_yticks(ys, [entry["name"] for entry, _ in ranked])
        ax.set_xlabel(f"IQM {group.score_label} (95% stratified-bootstrap CI)")
        ax.set_title(nav_label(group))
    return fig


def datasets_figure(group: Group):
    """Each entry's per-dataset mean ± standard error: one row per dataset with the entries side
    by side in rank order (best on top), the legend outside the plot on the right."""
    import matplotlib
    from matplotlib.figure import Figure

    n = len(group.rows)
    ys = list(range(len(group.datasets)))[::-1]
    step = min(0.2, 0.8 / n)  # the entries of a row stay within it
    colors = group.colors
    with matplotlib.rc_context(FIGURE_STYLE):
        fig = Figure(figsize=(11.0, max(3.0, 1.0 + len(ys) * (0.25 + 0.06 * n))), layout="constrained")
        ax = fig.add_subplot()
        for i, (entry, s) in enumerate(group.rows):
            offset = ((n - 1) / 2 - i) * step
            ran = [(d, y) for d, y in zip(group.datasets, ys) if d in s.datasets]  # restricted algorithms: some
            ax.errorbar([s.datasets[d].mean for d, _ in ran], [y + offset for _, y in ran],
                        xerr=[s.datasets[d].stderr for d, _ in ran], fmt="o", markersize=4, capsize=2,
                        color=colors[entry["name"]], label=entry["name"])
        for y in ys[:-1]:
            ax.axhline(y - 0.5, color="#dddddd", linewidth=0.8)
        prefix = f"{group.suite}/"  # the title names the suite
        ax.set_yticks(ys, [d.removeprefix(prefix) for d in group.datasets])
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)
        ax.set_xlabel(f"headline {group.score_label}, mean ± standard error over seeds"
                      if group.score_label in (SUCCESS_UNIT, META_UNIT, SKILL_UNIT)
                      else "headline score, mean ± standard error over seeds "
                      "(normalised where the task has reference scores)")
        ax.set_title(f"{nav_label(group)}: per-{group.item} scores")
        fig.legend(loc="outside right upper", title="entry (by rank)", fontsize=8, title_fontsize=8, frameon=False)
    return fig


def figure_svgs(group: Group) -> dict[str, bytes]:
    """``{file name: SVG bytes}``: the IQM with intervals (when any entry has one), and per-dataset scores."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    figures = {f"{group.key}-iqm.svg": iqm_figure(group), f"{group.key}-datasets.svg": datasets_figure(group)}
    out = {}
    with matplotlib.rc_context(FIGURE_STYLE):
        for name, fig in figures.items():
            if fig is not None:
                FigureCanvasSVG(fig)
                buffer = io.BytesIO()
                fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
                out[name] = buffer.getvalue()
    return out


# ---------------------------------------------------------------------- README.md
# The build replaces a README.md or site/index.html only if it carries its mark (the build wrote it).
README_MARK = "Generated by `offbench leaderboard build`"
INDEX_MARK = "<title>offbench leaderboard</title>"
RANK_RULE = "ranked by IQM; entries whose IQMs are equal at the precision shown share a rank (1, 2, 2, 4)"
D4RL_NOTE = ("The same runs, normalised with D4RL's reference returns (d4rl/infos.py) instead of each dataset's "
             "own; never used for ranking. offbench's locomotion tasks are Gymnasium's v5 MuJoCo tasks and its "
             "datasets are its own, while D4RL measured these returns on Gym's v2 tasks under mujoco-py: these "
             "are scores on D4RL's scale, not on D4RL's environments or datasets (see docs/evaluation.md, "
             "\"Scores on D4RL's scale\").")


META_NOTE = (f"Scores are the {META_UNIT}: 100 (trial return - random) / (reference - random) on each evaluation's "
             "held-out tasks, with random the uniformly random policy's expected trial return and reference the "
             "benchmark's exact Bayes-optimal trial return, or the per-task oracle's (offbench/envs/meta/"
             "benchmarks.py; the score offbench report gives): 0 = random, 100 = the reference, which no policy "
             "beats in expectation.")


SKILL_NOTE = (f"Scores are the {SKILL_UNIT}: the number of distinct cells (1 x 1 cells of the x-y plane; on "
              "HalfCheetah, 1 m/s bins of the x velocity) that an evaluation's seeded rollouts visit together, start included "
              "(METRA's state coverage), counted by code the agent never trains (offbench/evaluation/skills.py; the "
              "score offbench report gives). Higher is better. There is no reference to normalise by, so each "
              "environment has its own table, ranked by the IQM over seeds. Beside it, the independent "
              "classifier's held-out accuracy at the same evaluations (mean ± standard error over seeds), next to "
              "its chance 1 / K' for the method's K' evaluation skills, says how distinguishable the skills are; "
              "it is not ranked, and methods without skills have none.")


def skill_reference_note(group: Group, escape) -> str:
    """Which rows of a skills table are the reference (uniform random actions, algorithm ``random``),
    entry names through ``escape`` (:func:`md` or :func:`e`); empty when there are none."""
    names = [escape(entry["name"]) for entry, _ in group.rows if is_skill_reference(entry)]
    if not group.skills or not names:
        return ""
    return (f"Reference: {', '.join(names)} (uniform random actions, no learning): the coverage a method reaches "
            "without discovering anything. It is ranked with the others; a method below it covers less than "
            "random actions do.")


def is_skill_reference(entry: dict) -> bool:
    """A skills entry of uniform random actions (``random``), the suite's reference row."""
    return entry["suite"] == "skills" and entry["algorithm"]["import_path"] == "random"


def classifier_text(group: Group, s, digits: int = 2) -> str:
    """A skills row's classifier cell: ``mean ± standard error (chance c)`` over seeds on the table's
    environment, or ``- (no skills)``."""
    scores = s.classifier.get(group.datasets[0])
    if scores is None:
        return "- (no skills)"
    spread = f" ± {scores.stderr:.{digits}f}" if len(scores.accuracies) > 1 else ""
    return f"{scores.mean:.{digits}f}{spread} (chance {scores.chance:.{digits}f})"


def meta_references(group: Group) -> list[tuple[str, float, float, str]]:
    """``(benchmark, random, reference, kind)`` of a meta group's benchmarks, on the held-out tasks
    of a final evaluation (the point robot's references depend on them)."""
    from offbench.envs.meta.benchmarks import get_benchmark

    trials = max((group.protocol.train_config(entry["algorithm"]["import_path"], 0).final_eval_episodes
                  for entry, _ in group.rows), default=1)
    rows = []
    for dataset in group.datasets:
        benchmark = get_benchmark(dataset)
        random, reference = benchmark.references(trials)
        rows.append((dataset, random, reference, benchmark.reference_kind))
    return rows


def unranked_note(group: Group, escape) -> str:
    """Why some rows have no rank (empty when every entry ran every dataset); entry names through
    ``escape`` (:func:`md` or :func:`e`)."""
    if not group.unranked:
        return ""
    parts = [f"{escape(entry['name'])} ({len(s.datasets)} of {len(group.datasets)} {group.item}s)"
             for entry, s in group.unranked]
    return (f"Not ranked: {', '.join(parts)}. The protocol runs these algorithms on some of its "
            f"{group.item}s only (its per-algorithm datasets override), so their IQM is over those {group.item}s "
            f"alone and is not compared with the ranked entries'; their per-{group.item} cells are.")


def d4rl_references(datasets: list[str]) -> list:
    """D4RL's reference returns of the tasks of ``datasets``, each task once, in order."""
    return list(dict.fromkeys(d4rl_reference(d) for d in datasets))


def iqm_ci_text(iqm: float | None, ci: tuple[float, float] | None) -> str:
    """``IQM [low, high]``, or ``-`` without an IQM."""
    return f"{fmt(iqm)} [{fmt(ci[0])}, {fmt(ci[1])}]" if iqm is not None and ci is not None else "-"


def render_readme(groups: list[Group], figures: dict[str, bytes]) -> str:
    lines = ["# offbench leaderboard", "",
             f"{README_MARK} from `leaderboard/entries/*.json`; do not edit by hand.",
             "Entries are data: raw per-episode evaluation returns for every dataset and seed of a protocol.",
             "Every number below is recomputed from those returns (submitted aggregates are never used):",
             "a run's score is the protocol's headline rule over its evaluations' mean normalised scores",
             "(normalised with each dataset's own random and expert returns, its card's reference scores),",
             f"(on goal-suite tables that is the {SUCCESS_UNIT}: the goal cards' reference returns are 0 and 1;",
             f"on skills-suite tables the {SKILL_UNIT} of an evaluation's rollouts, one table per environment),",
             "and a table's aggregate is the IQM over seeds x datasets with a 95% stratified-bootstrap",
             "interval (drawn as `offbench report` draws it: the same scores give the same interval).",
             f"Entries are {RANK_RULE}.", "",
             "How to submit: see [SCHEMA.md](SCHEMA.md) (entry format, `offbench leaderboard submit`, `validate`,",
             "`verify`). The browsable board is `site/index.html`.", ""]
    for group in groups:
        p = group.protocol
        heading = f"## Suite `{group.suite}`, protocol `{p.name}`"
        if group.skills:
            heading += f", environment `{md(group.datasets[0])}`"
        runs = f"{len(p.seeds)} seeds x 1 environment" if group.skills else f"{len(p.seeds)} seeds x " \
            f"{len(p.datasets)} {group.item}s"
        lines += [heading, "", f"Headline: {p.headline.describe()}; score: {group.score_label}; {runs}.", ""]
        if group.meta:
            lines += [META_NOTE, "", "| benchmark | random | reference | kind |", "|---|---:|---:|---|"]
            lines += [f"| {md(b)} | {random:.3f} | {reference:.3f} | {md(kind)} |"
                      for b, random, reference, kind in meta_references(group)] + [""]
        if group.skills:
            lines += [SKILL_NOTE, ""]
        if f"{group.key}-iqm.svg" in figures:
            lines += [f"![IQM of {group.key}](site/figures/{group.key}-iqm.svg)", ""]
        if group.skills:
            lines += ["| rank | entry | method | IQM [95% CI] | mean | classifier accuracy (chance) | selection | "
                      "authors | links |", "|---:|---|---|---|---:|---|---|---|---|"]
        else:
            lines += ["| rank | entry | algorithm | IQM [95% CI] | mean | selection | authors | links |",
                      "|---:|---|---|---|---:|---|---|---|"]
        for rank, (entry, s) in zip(group.ranks, group.rows):
            ci = iqm_ci_text(s.iqm, s.ci)
            links = " ".join(f"[{label}]({url})" for label, url in
                             (("paper", safe_url(entry["paper"])), ("code", safe_url(entry["code"]))) if url)
            algorithm = md(entry["algorithm"]["name"]) + (" (reference)" if is_skill_reference(entry) else "")
            classifier = f" {classifier_text(group, s)} |" if group.skills else ""
            lines.append(f"| {rank or '-'} | {md(entry['name'])} | {algorithm} | {ci} | {fmt(s.mean)} |{classifier} "
                         f"{md(selection_text(entry))} | {md(', '.join(entry['authors'])) or '-'} | {links or '-'} |")
        if group.unranked:
            lines += ["", unranked_note(group, md)]
        if skill_reference_note(group, md):
            lines += ["", skill_reference_note(group, md)]
        lines += ["", f"Per-{group.item} headline scores (mean ± standard error over the {len(p.seeds)} seeds, the "
                  "cells of `offbench report`'s table):", "",
                  f"| {group.item} | " + " | ".join(md(entry["name"]) for entry, _ in group.rows) + " |",
                  "|---|" + "---:|" * len(group.rows)]
        for d in p.datasets:
            cells = [mean_se(s.datasets.get(d)) for _, s in group.rows]
            lines.append(f"| {md(d)} | " + " | ".join(cells) + " |")
        lines += ["", f"![per-{group.item} scores of {group.key}](site/figures/{group.key}-datasets.svg)", ""]
        if group.d4rl_datasets:
            lines += _d4rl_markdown(group)
    return "\n".join(lines).rstrip("\n") + "\n"


def _d4rl_markdown(group: Group) -> list[str]:
    """The README's D4RL-normalised section of a group: references, aggregates, per-dataset cells."""
    lines = [f"### {D4RL_TITLE}", "", D4RL_NOTE, "", "| task | D4RL's random | D4RL's expert | measured on |",
             "|---|---:|---:|---|"]
    lines += [f"| {md(ref.task)} | {ref.random!r} | {ref.expert!r} | {md(ref.literature_env_id)} |"
              for ref in d4rl_references(group.d4rl_datasets)]
    lines += ["", "| board rank | entry | D4RL-normalised IQM [95% CI] | D4RL-normalised mean |", "|---:|---|---|---:|"]
    for rank, (entry, s) in zip(group.ranks, group.rows):
        lines.append(f"| {rank or '-'} | {md(entry['name'])} | {iqm_ci_text(s.d4rl.iqm, s.d4rl.ci)} | "
                     f"{fmt(s.d4rl.mean)} |")
    lines += ["", "| dataset (D4RL-normalised) | " + " | ".join(md(entry["name"]) for entry, _ in group.rows) + " |",
              "|---|" + "---:|" * len(group.rows)]
    for d in group.d4rl_datasets:
        lines.append(f"| {md(d)} | " + " | ".join(mean_se(s.d4rl.datasets[d]) for _, s in group.rows) + " |")
    return lines + [""]


# ---------------------------------------------------------------------- site/index.html
SORT_SCRIPT = """
(function () {
  "use strict";
  function key(row, index, numeric) {
    var value = row.cells[index].getAttribute("data-sort");
    if (value === null) { value = row.cells[index].textContent; }
    if (!numeric) { return value; }
    var number = parseFloat(value);
    return isNaN(number) ? null : number;
  }
  function sortTable(table, th, index) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = th.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric), y = key(b, index, numeric), c = 0;
      if (x === null || y === null) {
        c = (x === null) - (y === null);
        if (c !== 0) { return c; }  /* missing values last in both directions */
      } else if (x < y) { c = -1; } else if (x > y) { c = 1; }
      if (!ascending) { c = -c; }
      return c !== 0 ? c : a.getAttribute("data-order") - b.getAttribute("data-order");
    });
    for (var r = 0; r < rows.length; r++) { body.appendChild(rows[r]); }
  }
  var tables = document.querySelectorAll("table.sortable");
  for (var t = 0; t < tables.length; t++) {
    (function (table) {
      var headers = table.tHead.rows[0].cells;
      for (var h = 0; h < headers.length; h++) {
        (function (th, index) {
          th.addEventListener("click", function () { sortTable(table, th, index); });
        })(headers[h], h);
      }
    })(tables[t]);
  }
})();
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 90rem; padding: 0 1rem; color: #222;
       overflow-wrap: break-word; }
.scroll { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; background: #f3f3f3; user-select: none; vertical-align: bottom; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
details { margin: 0.5rem 0; }
pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; }
img { max-width: 100%; height: auto; }
.nowrap { white-space: nowrap; }
"""


def _th(label: str, numeric: bool) -> str:
    kind = ' data-type="number"' if numeric else ""
    return f'<th scope="col"{kind}>{e(label)}</th>'


def _td(text: str, sort: str | None = None, numeric: bool = False) -> str:
    attrs = (f' data-sort="{e(sort)}"' if sort is not None else "") + (' class="num"' if numeric else "")
    return f"<td{attrs}>{text}</td>"


def _dataset(dataset_id: str) -> str:
    """A dataset id that may wrap after a ``/`` (narrow windows), never inside a part."""
    return "/<wbr>".join(f'<span class="nowrap">{e(part)}</span>' for part in dataset_id.split("/"))


def _figure(name: str, alt: str) -> str:
    """A figure, scaled to the window, that opens full size when clicked."""
    return f'<a href="figures/{e(name)}"><img src="figures/{e(name)}" alt="{e(alt)}"></a>'


def _links(entry: dict) -> str:
    parts = [f'<a href="{e(url)}" rel="nofollow noopener noreferrer">{label}</a>'
             for label, url in (("paper", safe_url(entry["paper"])), ("code", safe_url(entry["code"]))) if url]
    return " ".join(parts) or "-"


def _group_html(group: Group, figures: dict[str, bytes]) -> list[str]:
    p = group.protocol
    runs = "1 environment" if group.skills else f"{len(p.datasets)} {e(group.item)}s"
    out = [f'<section id="group-{e(group.key)}">', f"<h2>{e(group.title)}</h2>",
           f"<p>Headline: {e(p.headline.describe())}; score: {e(group.score_label)}; {len(p.seeds)} seeds &times; "
           f"{runs}. "
           f"Entries are {e(RANK_RULE)}. Click a column header to sort.</p>"]
    if group.meta:
        out += _meta_html(group)
    if group.skills:
        out.append(f"<p>{e(SKILL_NOTE)}</p>")
    if f"{group.key}-iqm.svg" in figures:
        out.append(_figure(f"{group.key}-iqm.svg", f"IQM with 95% intervals, {group.key}"))
    columns = [("rank", True), ("entry", False), ("method" if group.skills else "algorithm", False), ("IQM", True),
               ("CI low", True), ("CI high", True), ("mean", True)]
    columns += [("classifier accuracy", True), ("chance", True)] if group.skills else []
    columns += [("selection", False), ("authors", False), ("links", False)]
    out.append(f'<div class="scroll"><table class="sortable board" id="board-{e(group.key)}"><thead><tr>'
               + "".join(_th(label, numeric) for label, numeric in columns) + "</tr></thead><tbody>")
    for order, (rank, (entry, s)) in enumerate(zip(group.ranks, group.rows), 1):
        ci = s.ci or (None, None)
        algorithm = entry["algorithm"]["name"] + (" (reference)" if is_skill_reference(entry) else "")
        cells = [_td(str(rank or "-"), "" if rank is None else str(rank), True),
                 _td(f'<a href="#entry-{e(group.key)}-{e(entry["name"])}">{e(entry["name"])}</a>', entry["name"]),
                 _td(e(algorithm), algorithm),
                 _td(fmt(s.iqm), sort_value(s.iqm), True), _td(fmt(ci[0]), sort_value(ci[0]), True),
                 _td(fmt(ci[1]), sort_value(ci[1]), True), _td(fmt(s.mean), sort_value(s.mean), True)]
        if group.skills:
            scores = s.classifier.get(group.datasets[0])
            accuracy = None if scores is None else scores.mean
            cells += [_td(e(classifier_text(group, s).split(" (chance")[0]), sort_value(accuracy), True),
                      _td(fmt(None if scores is None else scores.chance, 2),
                          sort_value(None if scores is None else scores.chance), True)]
        cells += [_td(e(selection_text(entry)), selection_text(entry)),
                  _td(e(", ".join(entry["authors"])) or "-", ", ".join(entry["authors"])), _td(_links(entry), "")]
        out.append(f'<tr data-order="{order}" data-entry="{e(entry["name"])}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if group.unranked:
        out.append(f'<p class="unranked">{e(unranked_note(group, str))}</p>')
    if skill_reference_note(group, str):
        out.append(f'<p class="reference">{e(skill_reference_note(group, str))}</p>')
    # per-dataset detail: datasets x entries
    out.append(f"<h3>Per-{e(group.item)} headline scores (mean &plusmn; standard error over the {len(p.seeds)} "
               "seeds, the cells of <code>offbench report</code>'s table)</h3>")
    out.append(f'<div class="scroll"><table class="sortable datasets" id="datasets-{e(group.key)}"><thead><tr>'
               + _th(group.item, False) + "".join(_th(entry["name"], True) for entry, _ in group.rows)
               + "</tr></thead><tbody>")
    for i, d in enumerate(p.datasets, 1):
        cells = [_td(_dataset(d), d)] + [_td(e(mean_se(s.datasets.get(d))),
                                             sort_value(s.datasets[d].mean if d in s.datasets else None), True)
                                         for _, s in group.rows]
        out.append(f'<tr data-order="{i}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    out.append(_figure(f"{group.key}-datasets.svg", f"per-{group.item} scores, {group.key}"))
    if group.d4rl_datasets:
        out += _d4rl_html(group)
    out.append("<h3>Entries</h3>")
    for entry, s in group.rows:
        out += _entry_html(group, entry, s)
    out.append("</section>")
    return out


def _meta_html(group: Group) -> list[str]:
    """A meta group's score definition and its benchmarks' references."""
    out = [f"<p>{e(META_NOTE)}</p>", '<div class="scroll"><table class="references"><thead><tr>'
           + "".join(f'<th scope="col">{e(label)}</th>' for label in ("benchmark", "random", "reference", "kind"))
           + "</tr></thead><tbody>"]
    out += [f"<tr><td>{_dataset(b)}</td>{_td(f'{random:.3f}', numeric=True)}{_td(f'{reference:.3f}', numeric=True)}"
            f"<td>{e(kind)}</td></tr>" for b, random, reference, kind in meta_references(group)]
    out.append("</tbody></table></div>")
    return out


def _d4rl_html(group: Group) -> list[str]:
    """The page's D4RL-normalised section of a group: references, aggregates, per-dataset cells."""
    out = [f'<h3 id="d4rl-{e(group.key)}">{e(D4RL_TITLE)}</h3>', f"<p>{e(D4RL_NOTE)}</p>",
           '<div class="scroll"><table class="references"><thead><tr>'
           + "".join(f'<th scope="col">{e(label)}</th>' for label in
                     ("task", "D4RL's random", "D4RL's expert", "measured on")) + "</tr></thead><tbody>"]
    out += [f"<tr><td>{e(ref.task)}</td>{_td(e(repr(ref.random)), numeric=True)}"
            f"{_td(e(repr(ref.expert)), numeric=True)}<td>{e(ref.literature_env_id)}</td></tr>"
            for ref in d4rl_references(group.d4rl_datasets)]
    out.append("</tbody></table></div>")
    out.append(f'<div class="scroll"><table class="sortable d4rl" id="d4rl-board-{e(group.key)}"><thead><tr>'
               + "".join(_th(label, numeric) for label, numeric in
                         (("board rank", True), ("entry", False), ("D4RL-normalised IQM", True), ("CI low", True),
                          ("CI high", True), ("D4RL-normalised mean", True)))
               + "</tr></thead><tbody>")
    for order, (rank, (entry, s)) in enumerate(zip(group.ranks, group.rows), 1):
        d4rl = s.d4rl
        cells = [_td(str(rank or "-"), "" if rank is None else str(rank), True), _td(e(entry["name"]), entry["name"]),
                 _td(fmt(d4rl.iqm), sort_value(d4rl.iqm), True), _td(fmt(d4rl.ci[0]), sort_value(d4rl.ci[0]), True),
                 _td(fmt(d4rl.ci[1]), sort_value(d4rl.ci[1]), True), _td(fmt(d4rl.mean), sort_value(d4rl.mean), True)]
        out.append(f'<tr data-order="{order}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    out.append(f'<div class="scroll"><table class="sortable d4rl-datasets" id="d4rl-datasets-{e(group.key)}">'
               "<thead><tr>" + _th("dataset (D4RL-normalised)", False)
               + "".join(_th(entry["name"], True) for entry, _ in group.rows) + "</tr></thead><tbody>")
    for i, d in enumerate(group.d4rl_datasets, 1):
        cells = [_td(_dataset(d), d)] + [_td(e(mean_se(s.d4rl.datasets[d])), sort_value(s.d4rl.datasets[d].mean),
                                             True) for _, s in group.rows]
        out.append(f'<tr data-order="{i}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _entry_html(group: Group, entry: dict, s) -> list[str]:
    algo = entry["algorithm"]
    facts = [("algorithm", algo["name"]), ("version", algo.get("version") or "-"),
             ("import path", algo["import_path"]), ("code commit", entry["code_commit"] or "-"),
             ("offbench version", entry["offbench_version"]), ("authors", ", ".join(entry["authors"]) or "-"),
             ("hyperparameter selection", selection_text(entry)), ("runs", str(s.runs))]
    out = [f'<details id="entry-{e(group.key)}-{e(entry["name"])}"><summary>{e(entry["name"])}</summary><dl>']
    out += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts]
    out.append(f"<dt>links</dt><dd>{_links(entry)}</dd>")
    out.append(f"<dt>compute</dt><dd><pre>{e(json.dumps(entry['compute'], indent=1, sort_keys=True))}</pre></dd>")
    out.append(f"<dt>config</dt><dd><pre>{e(json.dumps(entry['config'], indent=1, sort_keys=True))}</pre></dd></dl>")
    seeds = sorted({seed for d in s.datasets.values() for seed in d.seeds})
    last = "classifier accuracy" if group.skills else "final success"  # a skills run has no task to succeed at
    out.append('<div class="scroll"><table class="sortable seeds"><thead><tr>' + _th(group.item, False)
               + "".join(_th(f"seed {seed}", True) for seed in seeds) + _th(last, True)
               + "</tr></thead><tbody>")
    for i, (d, ds) in enumerate(s.datasets.items(), 1):
        by_seed = dict(zip(ds.seeds, ds.scores))
        cells = [_td(_dataset(d), d)] + [_td(fmt(by_seed.get(seed), 2), sort_value(by_seed.get(seed)), True)
                                         for seed in seeds]
        value = (s.classifier[d].mean if d in s.classifier else None) if group.skills else ds.final_success
        cells.append(_td(fmt(value, 2), sort_value(value), True))
        out.append(f'<tr data-order="{i}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div></details>")
    return out


def nav_label(group: Group) -> str:
    """A table's link in the page's navigation: ``suite / protocol``, and a skills table's environment."""
    return f"{group.suite} / {group.protocol.name}" + (f" / {group.datasets[0]}" if group.skills else "")


def render_index(groups: list[Group], figures: dict[str, bytes]) -> str:
    script_hash = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
           "base-uri 'none'; form-action 'none'")
    body = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{e(csp)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" href="data:,">',  # no favicon request (a 404 in the console)
            INDEX_MARK, f"<style>{STYLE}</style></head><body>",
            "<h1>offbench leaderboard</h1>",
            "<p>Every number is recomputed from the entries' raw per-episode evaluation returns: a run's "
            "score follows its protocol's headline rule on mean normalised scores (normalised with each "
            f"dataset's own random and expert returns; on goal-suite tables the {e(SUCCESS_UNIT)}; on skills-suite "
            f"tables the {e(SKILL_UNIT)} of an evaluation's rollouts, one table per environment), and each table "
            "ranks entries by the IQM over seeds "
            "&times; datasets with a 95% stratified-bootstrap interval.</p>"]
    body.append("<nav><ul>" + "".join(f'<li><a href="#group-{e(g.key)}">{e(nav_label(g))}</a></li>'
                                      for g in groups) + "</ul></nav>")
    for group in groups:
        body += _group_html(group, figures)
    body += [f"<script>{SORT_SCRIPT}</script>", "</body></html>"]
    return "\n".join(body) + "\n"
