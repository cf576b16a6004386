"""offbench: offline RL datasets, baselines, evaluation and a leaderboard in one package."""
from offbench.data import Dataset, DatasetWriter, load_dataset
import offbench.envs  # noqa: F401  (registers the offbench/... Gymnasium ids on import)

__version__ = "0.1.0"
__all__ = ["Dataset", "DatasetWriter", "load_dataset", "__version__"]
