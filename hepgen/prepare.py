"""Read, match and preprocess the data of a configuration, and check that it inverts.

This is the first stage of training: it assembles the matched gen/reco pairs
(:func:`hepgen.dataset.load_pairs`), fits the feature preprocessing on them, and verifies on
the same data that ``inverse(transform(x))`` gives back ``x`` to float32 precision (integers
and categories exactly), so that a problem with a transform shows up before any training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.config import Config
from hepgen.dataset import PairedObjects, load_pairs
from hepgen.preprocessing import Preprocessor
from hepgen.utils import write_json

__all__ = ["check_round_trip", "prepare"]


def check_round_trip(
    preprocessor: Preprocessor, data: dict[str, np.ndarray], seed: int = 0
) -> dict[str, float]:
    """Largest relative round-trip error of each target through float32.

    Parameters
    ----------
    preprocessor : Preprocessor
        Fitted.
    data : dict of str to np.ndarray
        Raw condition and target columns, shape (n,) each.

    Returns
    -------
    dict of str to float
        Target name to ``max |x' - x| / max(|x|, 1)``; 0 for exact integer/category round trips.
    """
    z = preprocessor.transform_targets(data, rng=np.random.default_rng(seed)).astype(np.float32)
    back = preprocessor.inverse_targets(z, data)
    out = {}
    for name, values in back.items():
        x = np.asarray(data[name], dtype=np.float64)
        y = np.asarray(values, dtype=np.float64)
        out[name] = float(np.max(np.abs(y - x) / np.maximum(np.abs(x), 1.0))) if len(x) else 0.0
    return out


def prepare(
    config: Config,
    output: str | os.PathLike,
    files: list[str] | None = None,
    quiet: bool = False,
    pairs: PairedObjects | None = None,
) -> dict[str, Any]:
    """Assemble pairs, fit the preprocessing, check the round trip, write the results.

    Parameters
    ----------
    config : Config
        Validated configuration.
    output : path-like
        Folder for ``preprocessing.json`` and ``summary.json``.
    files : list of str or None
        Inputs overriding ``data.files``.
    quiet : bool
        Silence progress output.
    pairs : PairedObjects or None
        Already loaded pairs (from :func:`hepgen.dataset.load_pairs`), so that a caller who
        needs them too reads the files once; ``files`` is then ignored.

    Returns
    -------
    dict
        The summary also written to ``summary.json``: data counts, efficiency, fake fraction,
        per-feature ranges, and the round-trip errors.
    """
    output = Path(output)
    if pairs is None:
        pairs = load_pairs(config, files=files, quiet=quiet)
    train = pairs.pairs()
    weights = pairs.gen_weights[pairs.matched]
    preprocessor = Preprocessor(config.schema).fit(train, weights=weights)
    round_trip = check_round_trip(preprocessor, train, seed=config.seed)
    preprocessor.save(output / "preprocessing.json")
    features = {
        name: {
            "min": float(np.min(v)) if len(v) else None,
            "max": float(np.max(v)) if len(v) else None,
            "mean": float(np.mean(v)) if len(v) else None,
        }
        for name, v in train.items()
    }
    summary = {
        "config": config.source,
        "files": pairs.files,
        "data": pairs.summary(),
        "features": features,
        "condition_columns": preprocessor.condition_columns,
        "target_columns": preprocessor.target_columns,
        "round_trip_max_rel_error": round_trip,
    }
    write_json(output / "summary.json", summary)
    return summary
