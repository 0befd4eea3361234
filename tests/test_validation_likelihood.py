"""Held-out log-likelihood (``hepgen.validation.likelihood``): the total against the analytic
value, the per-target marginal comparison finding the target a model gets wrong, bounds
labelled as bounds, GANs without a total, weights and bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from hepgen.errors import InputError
from hepgen.validation.likelihood import heldout_likelihood
from hepgen.validation.samples import as_table

N = 40_000
#: Entropy of N(0, 1): the mean of -log p of its own draws (nats).
GAUSS_ENTROPY = 0.5 * np.log(2 * np.pi * np.e)


class Model:
    """y1 | c ~ N(c, s1), y2 | c ~ N(0, s2) with p(y) exact: a perfect model of
    :func:`reference` at s1 = s2 = 1."""

    condition_names = ("c",)
    target_names = ("y1", "y2")

    def __init__(self, s1: float = 1.0, s2: float = 1.0, likelihood: str = "exact") -> None:
        self.s1, self.s2 = s1, s2
        self.config = SimpleNamespace(model=SimpleNamespace(kind="flow"))
        self.response_ = SimpleNamespace(has_likelihood=likelihood == "exact")
        if likelihood == "bound":
            self.config.model.kind = "vae"
            self.response_.log_prob_bound = True
            self.response_.module_ = SimpleNamespace(settings=SimpleNamespace(iwae_samples=32))
        if likelihood == "none":
            self.config.model.kind = "gan"

    def sample(self, conditions, seed=None):
        rng = np.random.default_rng(seed)
        c = conditions["c"]
        return {
            "y1": c + self.s1 * rng.normal(size=c.size),
            "y2": self.s2 * rng.normal(size=c.size),
        }

    def _exact(self, targets, conditions):
        return stats.norm.logpdf(targets["y1"], conditions["c"], self.s1) + stats.norm.logpdf(
            targets["y2"], 0.0, self.s2
        )

    def log_prob(self, targets, conditions):
        assert self.response_.has_likelihood
        return self._exact(targets, conditions)

    def log_prob_bound(self, targets, conditions, method="iwae", k=None, seed=0):
        return self._exact(targets, conditions) - 0.1  # a bound: below log p


def reference(n: int = N, seed: int = 0, weights: bool = False):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=n)
    cols = {"c": c, "y1": c + rng.normal(size=n), "y2": rng.normal(size=n)}
    w = rng.uniform(0.5, 1.5, n) if weights else None
    return as_table(cols, weights=w)


def test_perfect_model_total_and_targets() -> None:
    res = heldout_likelihood(Model(), reference())
    total = res.total
    assert res.exact and res.method == "exact" and res.kind == "flow"
    assert total["n"] == N // 2 and 0 < total["stderr"] < 0.02
    assert abs(total["mean"] + 2 * GAUSS_ENTROPY) < 4 * total["stderr"]
    # marginals: y1 ~ N(0, sqrt 2), y2 ~ N(0, 1); the histogram estimate is a little low
    # (50 quantile bins, the outer ones wide)
    entropy = {"y1": GAUSS_ENTROPY + 0.5 * np.log(2.0), "y2": GAUSS_ENTROPY}
    for name in ("y1", "y2"):
        diff = res.per_target[name]["difference"]
        # a perfect model: its marginal is the data's, within the histograms' noise
        assert abs(diff["mean"]) < max(4 * diff["stderr"], 0.01), (name, diff)
        assert abs(res.per_target[name]["reference"]["mean"] + entropy[name]) < 0.08


def test_the_target_a_model_gets_wrong_stands_out() -> None:
    """A model 30 % too narrow in y2 only: the total drops, and so does y2's marginal, by
    about KL(N(0,1) || N(0,0.7)) = 0.19 nats; y1 stays at 0."""
    good = heldout_likelihood(Model(), reference())
    narrow = heldout_likelihood(Model(s2=0.7), reference())
    assert narrow.total["mean"] < good.total["mean"] - 0.1
    kl = np.log(0.7) + 1 / (2 * 0.7**2) - 0.5
    d2 = narrow.per_target["y2"]["difference"]
    assert d2["mean"] < -5 * d2["stderr"]
    assert abs(d2["mean"] + kl) < 0.05
    d1 = narrow.per_target["y1"]["difference"]
    assert abs(d1["mean"]) < max(4 * d1["stderr"], 0.01)


def test_bound_is_labelled_and_gan_has_no_total() -> None:
    vae = heldout_likelihood(Model(likelihood="bound"), reference(8000))
    assert not vae.exact and vae.method == "iwae bound, k=32"
    elbo = heldout_likelihood(Model(likelihood="bound"), reference(8000), bound="elbo")
    assert elbo.method == "elbo bound"
    gan = heldout_likelihood(Model(likelihood="none"), reference(8000))
    assert gan.total is None and gan.method == "none" and not gan.exact
    assert set(gan.per_target) == {"y1", "y2"}  # the marginals need no likelihood
    d = gan.to_dict()
    assert d["total"] is None and d["kind"] == "gan"


def test_weights_subsample_and_seed() -> None:
    ref = reference(20_000, weights=True)
    res = heldout_likelihood(Model(), ref, max_events=4000, seed=3)
    assert res.n_evaluated == 4000 and "weighted" in res.note and "subsample" in res.note
    again = heldout_likelihood(Model(), ref, max_events=4000, seed=3)
    assert again.to_dict() == res.to_dict()
    assert abs(res.total["mean"] + 2 * GAUSS_ENTROPY) < 5 * res.total["stderr"]


def test_integer_targets_use_one_bin_per_value() -> None:
    class Counts(Model):
        target_names = ("n",)

        def sample(self, conditions, seed=None):
            rng = np.random.default_rng(seed)
            return {"n": rng.poisson(4.0, conditions["c"].size).astype(float)}

    rng = np.random.default_rng(1)
    c = rng.normal(size=6000)
    ref = as_table({"c": c, "n": rng.poisson(4.0, c.size).astype(np.int32)})
    res = heldout_likelihood(Counts(likelihood="none"), ref)
    entry = res.per_target["n"]
    assert entry["bins"] >= 10  # one per count value
    # log-probabilities of a Poisson(4): the entropy is about 2.08 nats
    assert abs(entry["reference"]["mean"] + 2.08) < 0.05
    assert abs(entry["difference"]["mean"]) < 0.02


def test_bad_input() -> None:
    with pytest.raises(InputError, match=r"no column\(s\) \['y2'\]"):
        heldout_likelihood(Model(), as_table({"c": np.zeros(100), "y1": np.zeros(100)}))
    with pytest.raises(InputError, match="bound 'x'"):
        heldout_likelihood(Model(), reference(100), bound="x")
    with pytest.raises(InputError, match="at least 20"):
        heldout_likelihood(Model(), reference(10))
