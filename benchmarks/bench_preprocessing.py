"""Preprocessing throughput: fit, transform and inverse on 1M rows x 6 features.

Three hepgen configurations are timed beside scikit-learn on the same float32 columns, in the
same run (best of ``repeats``):

* ``default``: the default pipelines of a jet schema with 6 targets (pt: ratio+log+standardize,
  eta: difference+standardize, phi: periodic difference+standardize, mass: log+standardize,
  b-tag: logit+standardize, constituents: dequantize+standardize) and the 3 gen conditions they
  refer to (fitted too; ``fit`` covers all 9 features, transform/inverse the 6 targets);
* ``quantile``: 6 targets with ``quantile_gaussian`` (1000 knots, exact weighted quantiles on
  all rows), against ``QuantileTransformer(output_distribution="normal", n_quantiles=1000)``
  with its default subsample (10 000 rows) and with ``subsample=None`` (all rows, like hepgen);
* ``standardize``: 6 targets with ``standardize``, against ``StandardScaler``.

Ratios are hepgen time / scikit-learn time (below 1: hepgen is faster).  hepgen's numbers
include its input checks (missing columns, lengths, NaN/inf) and the float32 output matrix;
scikit-learn's include its own validation.  ``round_trip_max_rel_error`` is the largest
``|x' - x| / max(|x|, 1)`` over the targets after casting the model matrix to float32
(0 for the integer column).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from _timing import best_time

from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.preprocessing import Preprocessor

TARGETS = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB", "Jet_nConstituents"]


def make_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Jet-like float32/uint8 columns: falling pt spectrum, responses, b-tag with bound masses."""
    rng = np.random.default_rng(seed)
    gen_pt = (15.0 * (1.0 - rng.random(n)) ** (-1 / 3)).astype(np.float32)
    gen_eta = rng.uniform(-2.5, 2.5, n).astype(np.float32)
    gen_phi = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    pt = (gen_pt * np.abs(rng.normal(1.0, 0.05 + 1.0 / np.sqrt(gen_pt)))).astype(np.float32)
    eta = (gen_eta + rng.normal(0, 0.02, n)).astype(np.float32)
    phi = np.mod(gen_phi + rng.normal(0, 0.02, n) + np.pi, 2 * np.pi) - np.pi
    mass = (gen_pt * rng.lognormal(np.log(0.1), 0.35, n)).astype(np.float32)
    btag = rng.beta(1, 8, n)
    u = rng.random(n)
    btag[u < 0.05] = 0.0
    btag[u > 0.97] = 1.0
    n_const = np.clip(rng.poisson(5 + gen_pt / 10), 1, 255).astype(np.uint8)
    return {
        "GenJet_pt": gen_pt,
        "GenJet_eta": gen_eta,
        "GenJet_phi": gen_phi,
        "Jet_pt": pt,
        "Jet_eta": eta,
        "Jet_phi": phi.astype(np.float32),
        "Jet_mass": mass,
        "Jet_btagDeepFlavB": btag.astype(np.float32),
        "Jet_nConstituents": n_const,
    }


def schemas() -> dict[str, FeatureSchema]:
    default = FeatureSchema(
        [
            FeatureSpec("GenJet_pt", "condition", "positive"),
            FeatureSpec("GenJet_eta", "condition"),
            FeatureSpec("GenJet_phi", "condition", periodic=True),
            FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt"),
            FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta"),
            FeatureSpec("Jet_phi", "target", periodic=True, relative_to="GenJet_phi"),
            FeatureSpec("Jet_mass", "target", "positive"),
            FeatureSpec("Jet_btagDeepFlavB", "target", "bounded", bounds=(0.0, 1.0)),
            FeatureSpec("Jet_nConstituents", "target", "integer"),
        ]
    )
    quantile = FeatureSchema(
        [
            FeatureSpec(name, "target", transforms=[{"type": "quantile_gaussian"}])
            for name in TARGETS
        ]
    )
    standardize = FeatureSchema([FeatureSpec(name, "target") for name in TARGETS])
    return {"default": default, "quantile": quantile, "standardize": standardize}


def time_hepgen(schema: FeatureSchema, data: dict[str, np.ndarray], repeats: int) -> dict:
    fit_s, pre = best_time(lambda: Preprocessor(schema).fit(data), repeats)
    tr_s, z = best_time(lambda: pre.transform_targets(data), repeats)
    inv_s, back = best_time(lambda: pre.inverse_targets(z, data), repeats)
    err = 0.0
    for name, values in back.items():
        x = data[name].astype(np.float64)
        d = np.abs(values.astype(np.float64) - x)
        if name == "Jet_phi":
            d = np.abs(np.mod(d + np.pi, 2 * np.pi) - np.pi)
        err = max(err, float(np.max(d / np.maximum(np.abs(x), 1.0))))
    return {
        "fit_s": fit_s,
        "transform_s": tr_s,
        "inverse_s": inv_s,
        "total_s": fit_s + tr_s + inv_s,
        "round_trip_max_rel_error": err,
    }


def time_sklearn(make: Callable[[], object], x: np.ndarray, repeats: int) -> dict:
    fit_s, model = best_time(lambda: make().fit(x), repeats)
    tr_s, z = best_time(lambda: model.transform(x), repeats)
    inv_s, _ = best_time(lambda: model.inverse_transform(z), repeats)
    return {
        "fit_s": fit_s,
        "transform_s": tr_s,
        "inverse_s": inv_s,
        "total_s": fit_s + tr_s + inv_s,
    }


def ratios(ours: dict, theirs: dict) -> dict:
    return {
        k: round(ours[k] / theirs[k], 3) for k in ("fit_s", "transform_s", "inverse_s", "total_s")
    }


def run(quick: bool) -> dict:
    """Time hepgen and scikit-learn; ``quick`` uses 100k rows and one repeat."""
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    n = 100_000 if quick else 1_000_000
    repeats = 1 if quick else 3
    data = make_data(n)
    x = np.column_stack([data[name] for name in TARGETS]).astype(np.float32)
    sk = {
        "quantile_transformer": time_sklearn(
            lambda: QuantileTransformer(
                output_distribution="normal", n_quantiles=1000, random_state=0
            ),
            x,
            repeats,
        ),
        "quantile_transformer_all_rows": time_sklearn(
            lambda: QuantileTransformer(
                output_distribution="normal", n_quantiles=1000, subsample=None, random_state=0
            ),
            x,
            repeats,
        ),
        "standard_scaler": time_sklearn(StandardScaler, x, repeats),
    }
    ours = {name: time_hepgen(schema, data, repeats) for name, schema in schemas().items()}
    result = {
        "rows": n,
        "features": len(TARGETS),
        "repeats": repeats,
        "hepgen": ours,
        "sklearn": sk,
        "ratios": {
            "default_vs_quantile_transformer": ratios(ours["default"], sk["quantile_transformer"]),
            "default_vs_standard_scaler": ratios(ours["default"], sk["standard_scaler"]),
            "quantile_vs_quantile_transformer": ratios(
                ours["quantile"], sk["quantile_transformer"]
            ),
            "quantile_vs_quantile_transformer_all_rows": ratios(
                ours["quantile"], sk["quantile_transformer_all_rows"]
            ),
            "standardize_vs_standard_scaler": ratios(ours["standardize"], sk["standard_scaler"]),
        },
        "rows_per_s": {name: round(n / r["total_s"]) for name, r in {**ours, **sk}.items()},
    }
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
