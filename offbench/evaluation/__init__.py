"""Evaluation of offline-RL policies, one job per submodule (e.g. ``ope``: off-policy estimators;
``dope_metrics``: DOPE's metrics that score estimates against true values). Import the
submodules directly; this package imports nothing heavy on its own."""
