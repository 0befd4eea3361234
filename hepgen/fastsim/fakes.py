"""The fakes of a fast simulation: reco objects without a gen match (pile-up, noise).

Fakes cannot be generated per gen object, so they are generated per event: the number of
fakes is drawn from its observed distribution in bins of the event's gen-object multiplicity
(:func:`multiplicity_table`), and their features from a second generator of the same kind as
the response, conditioned on that multiplicity, with the same target preprocessing except
that nothing is expressed relative to a gen object (:func:`fake_schema`; there is none).

Examples
--------
>>> import numpy as np
>>> table = multiplicity_table(np.array([1, 1, 2]), np.array([0, 1, 0]))
>>> table.shape, table[1].tolist()
((9, 2), [0.5, 0.5])
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hepgen.fastsim.columns import stored_dtypes
from hepgen.features import FeatureSchema, FeatureSpec

__all__ = ["MAX_MULTIPLICITY_BIN", "MIN_FAKES", "Fakes", "fake_schema", "multiplicity_table"]

#: Gen-object multiplicities above this share one bin of the fake-multiplicity table.
MAX_MULTIPLICITY_BIN = 8
#: Fewer training fakes than this: no fake model (a note in the model card says so).
MIN_FAKES = 50


def fake_schema(schema: FeatureSchema, multiplicity: str) -> FeatureSchema:
    """The targets without ``relative_to`` (fakes have no gen partner), conditioned on the
    event's gen-object multiplicity (an integer condition named ``multiplicity``)."""
    targets = [dataclasses.replace(s, relative_to=None) for s in schema.targets]
    return FeatureSchema([FeatureSpec(multiplicity, "condition", "integer"), *targets])


def multiplicity_table(n_gen: np.ndarray, n_fake: np.ndarray) -> np.ndarray:
    """P(k fakes | gen multiplicity bin) from per-event counts.

    Parameters
    ----------
    n_gen, n_fake : np.ndarray of shape (n_events,)
        Gen objects and fakes per training event.

    Returns
    -------
    np.ndarray of shape (MAX_MULTIPLICITY_BIN + 1, max(n_fake) + 1)
        Rows sum to 1; a multiplicity bin never seen falls back to the overall distribution.
    """
    bins = np.minimum(n_gen, MAX_MULTIPLICITY_BIN)
    table = np.zeros((MAX_MULTIPLICITY_BIN + 1, int(n_fake.max()) + 1))
    np.add.at(table, (bins, n_fake), 1.0)
    overall = table.sum(axis=0) / table.sum()
    totals = table.sum(axis=1, keepdims=True)
    return np.where(totals > 0, table / np.maximum(totals, 1), overall)


@dataclasses.dataclass
class Fakes:
    """Per-event fake multiplicity table and the generator of fake features.

    Attributes
    ----------
    table : np.ndarray of shape (MAX_MULTIPLICITY_BIN + 1, k_max + 1)
        P(k fakes | gen multiplicity bin) (:func:`multiplicity_table`).
    preprocessor : Preprocessor
        Of the fakes' features (:func:`fake_schema`).
    model : GenerativeModel
        The flow or GAN of the fake features (model space).
    multiplicity : str
        Name of the multiplicity condition (``nGenJet``).
    """

    table: np.ndarray
    preprocessor: Any
    model: Any
    multiplicity: str

    def counts(self, n_gen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Fakes per event (int64, shape (n_events,)) for ``n_gen`` gen objects per event."""
        bins = np.minimum(n_gen, MAX_MULTIPLICITY_BIN)
        cdf = np.cumsum(self.table, axis=1)
        u = rng.random(len(bins))
        return (u[:, None] > cdf[bins]).sum(axis=1).astype(np.int64)

    def sample(self, n_gen_per_fake: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """Features of one fake per entry of ``n_gen_per_fake`` (its event's gen
        multiplicity), physical units and stored dtypes."""
        cond = {self.multiplicity: n_gen_per_fake.astype(np.int64)}
        pre = self.preprocessor
        z = self.model.sample(pre.transform_conditions(cond), seed=seed)
        return stored_dtypes(pre.dtypes, pre.inverse_targets(z, cond))

    def card(self) -> dict[str, Any]:
        """The ``fakes`` entry of ``hepgen-model.json`` (the weights are saved apart)."""
        return {
            "multiplicity": self.multiplicity,
            "table": self.table.tolist(),
            "preprocessing": self.preprocessor.to_dict(),
        }
