"""offbench's dataset layer: the HDF5 trajectory store, views, labels and the catalogue."""
from __future__ import annotations

import os

from offbench.data.dataset import Dataset, DatasetMetadata, Episode, read_dataset
from offbench.data.writer import DatasetWriter


def load_dataset(id_or_path: str | os.PathLike, *, download: bool = False, validate: bool = False) -> Dataset:
    """Load a dataset into memory by catalogue id (``suite/env/name-vN``) or file path.

    An id is read from the cache (``$OFFBENCH_HOME``); ``download=True`` fetches a missing
    file from the mirrors first. ``validate=True`` also verifies every array's checksum.
    """
    from offbench.data.catalogue import resolve_dataset_path

    return read_dataset(resolve_dataset_path(id_or_path, download=download), validate=validate)


__all__ = ["Dataset", "DatasetMetadata", "DatasetWriter", "Episode", "load_dataset", "read_dataset"]
