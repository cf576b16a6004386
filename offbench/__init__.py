"""offbench: offline RL datasets, baselines, evaluation and a leaderboard in one package."""
from offbench.data import Dataset, DatasetWriter, load_dataset

__version__ = "0.1.0"
__all__ = ["Dataset", "DatasetWriter", "load_dataset", "__version__"]
