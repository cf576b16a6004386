"""The leaderboard: entries as data (``leaderboard/entries/*.json``), validated, re-run and rendered.

Modules, one job each: ``schema`` (read an entry file and check its shape), ``validate``
(catalogue, protocol compliance, plausibility, unique name), ``submit`` (an entry from a
``reproduce`` results directory), ``scoring`` (every aggregate recomputed from raw returns),
``build`` (README.md and the static site), ``site`` (HTML and figures), ``verify`` (re-run
sampled runs of an entry), ``cli`` (the ``offbench leaderboard`` commands), ``files`` (paths and
atomic writes). ``validate`` and ``build`` never import or execute submitted code.
"""
