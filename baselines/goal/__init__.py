"""Goal-conditioned offline baselines of OGBench (Park et al., ICLR 2025), on ``offbench.train.fit``:
GCBC, GCIVL, GCIQL, QRL, CRL and HIQL, one module each (docs/goal-conditioned.md)."""

#: name -> "module:Class", the names ``offbench train`` and the goal protocols use
ALGORITHMS = {
    "gcbc": "baselines.goal.gcbc:GCBC",
    "gcivl": "baselines.goal.gcivl:GCIVL",
    "gciql": "baselines.goal.gciql:GCIQL",
    "qrl": "baselines.goal.qrl:QRL",
    "crl": "baselines.goal.crl:CRL",
    "hiql": "baselines.goal.hiql:HIQL",
}
