"""FER2013 data layer: load the CSV / gzip CSV / image folders into a ``FERDataset``, with a fast cache.

Public API::

    from members.data import (USAGES, DEFAULT_DATA, DataError, FERDataset, resolve_data_path,
                              load_dataset, class_weights, main)

``python -m members.data describe PATH [--json]`` prints counts, class weights, duplicates and
blank images. Row numbers in errors: ``line N`` counts the header as line 1 (``data row`` is 1-based
over images). Loader details: ``_csv`` (CSV formats), ``_folder`` (image folders), ``_cache``
(cache file and fingerprint), ``describe`` (the report).
"""

from ._common import USAGES, DataError
from ._dataset import FERDataset, class_weights
from ._load import DEFAULT_DATA, load_dataset, resolve_data_path
from .describe import describe_dataset, main

__all__ = [
    "USAGES",
    "DEFAULT_DATA",
    "DataError",
    "FERDataset",
    "resolve_data_path",
    "load_dataset",
    "class_weights",
    "describe_dataset",
    "main",
]
