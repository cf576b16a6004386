"""Goal-conditioned offline baselines of OGBench (Park et al., ICLR 2025), on ``offbench.train.fit``:
GCBC, GCIVL, GCIQL, QRL, CRL and HIQL, one module each (docs/goal-conditioned.md)."""

from offbench.algorithm import BUILTIN

#: name -> "module:Class", the names ``offbench train`` and the goal protocols use (from the one registry)
ALGORITHMS = {name: target for name, target in BUILTIN.items() if target.startswith("baselines.goal.")}
