"""offbench's dataset layer: the HDF5 trajectory store, views, labels and the catalogue."""
from __future__ import annotations

import os

from offbench.data.dataset import Dataset, DatasetMetadata, Episode, read_dataset
from offbench.data.writer import DatasetWriter


def load_dataset(id_or_path: str | os.PathLike, *, download: bool = False, validate: bool = True) -> Dataset:
    """Load a dataset into memory by catalogue id (``suite/env/name-vN``) or file path.

    An id is read from the cache (``$OFFBENCH_HOME``); ``download=True`` fetches a missing
    file from the mirrors first. The file is always checked for structure and for values
    outside its spaces, and by default every array's sha256 is verified against the recorded
    checksums (see docs/dataset-format.md for the cost); ``validate=False`` skips only the checksums.
    """
    from offbench.data.catalogue import resolve_dataset_path
    from offbench.errors import DatasetNotFoundError

    try:
        path = resolve_dataset_path(id_or_path)
    except DatasetNotFoundError:
        if not download:
            raise
        from offbench.data.mirrors import download_dataset

        path = download_dataset(str(id_or_path))  # an unknown id raises here as it did above
    return read_dataset(path, validate=validate)


__all__ = ["Dataset", "DatasetMetadata", "DatasetWriter", "Episode", "load_dataset", "read_dataset"]
