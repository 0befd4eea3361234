"""Feature schema: construction, normalisation, serialisation and validation errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepgen.errors import ConfigError
from hepgen.features import KINDS, ROLES, FeatureSchema, FeatureSpec


def jet_schema() -> FeatureSchema:
    return FeatureSchema(
        [
            FeatureSpec("GenJet_pt", "condition", "positive"),
            FeatureSpec("GenJet_eta", "condition"),
            FeatureSpec("GenJet_phi", "condition", periodic=True),
            FeatureSpec("GenJet_hadronFlavour", "condition", "categorical", categories=[0, 4, 5]),
            FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt"),
            FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta"),
            FeatureSpec("Jet_phi", "target", periodic=True, relative_to="GenJet_phi"),
            FeatureSpec("Jet_btagDeepFlavB", "target", "bounded", bounds=[0, 1]),
            FeatureSpec("Jet_nConstituents", "target", "integer", bounds=(1, 255)),
            FeatureSpec(
                "Jet_mass",
                "target",
                "positive",
                transforms=[{"type": "log", "offset": 1.0}, {"type": "quantile_gaussian"}],
            ),
        ]
    )


def test_literals_match_constants():
    assert ROLES == ("condition", "target")
    assert KINDS == ("continuous", "positive", "bounded", "integer", "categorical")


def test_spec_defaults_and_normalisation():
    spec = FeatureSpec("Jet_eta", "target")
    assert spec.kind == "continuous" and spec.bounds is None and not spec.periodic
    spec = FeatureSpec("Jet_btag", "target", "bounded", bounds=[0, np.float32(1)])
    assert spec.bounds == (0.0, 1.0) and all(type(b) is float for b in spec.bounds)
    spec = FeatureSpec("GenJet_flav", "condition", "categorical", categories=[5, np.uint8(0), 4])
    assert spec.categories == (5.0, 0.0, 4.0)  # declared order is kept
    spec = FeatureSpec("Jet_mass", "target", transforms=[{"type": "standardize"}])
    assert spec.transforms == ({"type": "standardize"},)


def test_spec_is_frozen_and_hashable():
    spec = FeatureSpec("Jet_mass", "target", "positive", transforms=({"type": "log"},))
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    same = FeatureSpec("Jet_mass", "target", "positive", transforms=[{"type": "log"}])
    assert spec == same and hash(spec) == hash(same) and len({spec, same}) == 1


def test_spec_transforms_are_copied():
    cfg = {"type": "quantile_gaussian", "n_quantiles": 100}
    spec = FeatureSpec("Jet_mass", "target", transforms=[cfg])
    cfg["n_quantiles"] = 5
    assert spec.transforms[0]["n_quantiles"] == 100


def test_spec_dict_round_trip_and_compact_output():
    for spec in jet_schema():
        d = spec.to_dict()
        assert FeatureSpec.from_dict(json.loads(json.dumps(d))) == spec
    d = jet_schema()["GenJet_hadronFlavour"].to_dict()
    assert d == {
        "name": "GenJet_hadronFlavour",
        "role": "condition",
        "kind": "categorical",
        "categories": [0, 4, 5],
    }
    assert jet_schema()["Jet_phi"].to_dict()["periodic"] is True
    assert "periodic" not in jet_schema()["Jet_eta"].to_dict()


def test_spec_sentinels():
    def btag(sentinels):
        return FeatureSpec(
            "Jet_btagDeepFlavB", "target", "bounded", bounds=(0, 1), sentinels=sentinels
        )

    spec = btag([-1, np.float32(-3000)])
    assert spec.sentinels == (-1.0, -3000.0) and all(type(v) is float for v in spec.sentinels)
    assert spec.to_dict() == {
        "name": "Jet_btagDeepFlavB",
        "role": "target",
        "kind": "bounded",
        "bounds": [0.0, 1.0],
        "sentinels": [-1, -3000],
    }
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)
    same = btag((-1.0, -3e3))
    assert same == spec and len({spec, same}) == 1
    plain = btag(None)
    assert plain.sentinels is None and "sentinels" not in plain.to_dict()
    assert plain != spec and hash(plain) != hash(spec)
    assert btag((-3000, -1)) != spec  # the order is the flag's category order
    # inside the bounds (an exact 0 or 1), non-integer, on conditions, integer features: all fine
    assert btag([0.0, 1]).sentinels == (0.0, 1.0)
    mass = FeatureSpec("GenJet_mass", "condition", "positive", sentinels=[-999.9])
    assert mass.to_dict()["sentinels"] == [-999.9]
    idx = FeatureSpec("Jet_genJetIdx", "target", "integer", bounds=(0, 255), sentinels=(-1,))
    assert idx.sentinels == (-1.0,)
    # a schema with sentinels round-trips through JSON
    schema = FeatureSchema([FeatureSpec("GenJet_pt", "condition", "positive"), spec, mass, idx])
    assert FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_schema_access():
    schema = jet_schema()
    assert len(schema) == 10
    assert [s.name for s in schema.conditions] == [
        "GenJet_pt",
        "GenJet_eta",
        "GenJet_phi",
        "GenJet_hadronFlavour",
    ]
    assert [s.name for s in schema.targets][:2] == ["Jet_pt", "Jet_eta"]
    assert schema.names == [s.name for s in schema]
    assert schema["Jet_pt"].relative_to == "GenJet_pt"
    assert "Jet_pt" in schema and "Jet_ptt" not in schema
    with pytest.raises(KeyError, match="did you mean 'Jet_pt'"):
        schema["Jet_ptt"]


def test_schema_dict_round_trip_through_json():
    schema = jet_schema()
    again = FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema
    assert again != FeatureSchema(list(schema)[:-1])


def test_schema_accepts_dicts():
    schema = FeatureSchema(
        [
            {"name": "GenJet_pt", "role": "condition", "kind": "positive"},
            {"name": "Jet_pt", "role": "target", "kind": "positive", "relative_to": "GenJet_pt"},
        ]
    )
    assert schema["Jet_pt"].kind == "positive"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(role="tagret"), r"feature 'x': key 'role'.*'tagret'.*did you mean 'target'"),
        (dict(kind="positve"), r"feature 'x': key 'kind'.*did you mean 'positive'"),
        (dict(kind="bounded"), r"feature 'x': key 'bounds' is required for kind 'bounded'"),
        (dict(kind="bounded", bounds=(1, 0)), r"feature 'x': key 'bounds' needs low < high"),
        (
            dict(kind="bounded", bounds=(0, 1, 2)),
            r"feature 'x': key 'bounds' must be \[low, high\]",
        ),
        (dict(kind="bounded", bounds=(0, float("inf"))), r"key 'bounds' must hold finite"),
        (dict(kind="bounded", bounds=(0, "1")), r"key 'bounds' must hold numbers"),
        (dict(bounds=(0, 1)), r"feature 'x': key 'bounds' is only allowed for kinds"),
        (dict(categories=(0, 1)), r"feature 'x': key 'categories' is only allowed"),
        (
            dict(kind="categorical", categories=(0, 4, 4)),
            r"key 'categories' lists 4 more than once",
        ),
        (dict(kind="categorical", categories=()), r"key 'categories' must be a non-empty list"),
        (
            dict(role="condition", relative_to="y"),
            r"feature 'x': key 'relative_to' is only allowed for targets",
        ),
        (dict(kind="integer", relative_to="y"), r"key 'relative_to' is only allowed for kinds"),
        (dict(relative_to="x"), r"key 'relative_to' names the feature itself"),
        (dict(kind="positive", periodic=True), r"feature 'x': key 'periodic' is only allowed"),
        (dict(periodic="yes"), r"key 'periodic' must be true or false"),
        (dict(transforms="log"), r"key 'transforms' must be a list"),
        (
            dict(transforms=[{"type": "standardise"}]),
            r"feature 'x'.*unknown transform type 'standardise'.*did you mean 'standardize'",
        ),
        (
            dict(transforms=[{"type": "quantile_gaussian", "n_quantile": 10}]),
            r"feature 'x'.*unknown key 'n_quantile'.*did you mean 'n_quantiles'",
        ),
        (
            dict(transforms=[{"type": "quantile_gaussian", "n_quantiles": 1}]),
            r"key 'n_quantiles' must be an integer >= 2",
        ),
        (dict(transforms=[{"type": "standardize", "mean": 0.0}]), r"key 'mean' is fitted state"),
        (
            dict(transforms=[{"type": "log", "offset": "1"}]),
            r"transform 'log': key 'offset' must be a number",
        ),
        (dict(transforms=[{"type": "logit"}]), r"transform 'logit': key 'low' is required"),
        (dict(transforms=["log"]), r"step 1 must be a mapping"),
        (
            dict(transforms=[{"type": "onehot"}]),
            r"'onehot' is only allowed as the last step of a condition",
        ),
        (
            dict(relative_to="y", transforms=[{"type": "difference", "to": "y"}]),
            r"conflicts with relative_to='y'",
        ),
        (
            dict(role="condition", transforms=[{"type": "ratio", "to": "y"}]),
            r"'ratio' is only allowed for targets",
        ),
        (
            dict(kind="categorical", sentinels=[-1]),
            r"feature 'x': key 'sentinels' is not allowed for kind 'categorical'",
        ),
        (dict(sentinels=[-1, float("nan")]), r"feature 'x': key 'sentinels' must hold finite"),
        (dict(sentinels=[float("-inf")]), r"feature 'x': key 'sentinels' must hold finite"),
        (dict(sentinels=[-1, "-999"]), r"feature 'x': key 'sentinels' must hold numbers"),
        (dict(sentinels=[True]), r"key 'sentinels' must hold numbers"),
        (
            dict(sentinels=[-1, -999, -1.0]),
            r"feature 'x': key 'sentinels' lists -1 more than once",
        ),
        (dict(sentinels=[]), r"feature 'x': key 'sentinels' must be a non-empty list"),
        (dict(sentinels=-1), r"feature 'x': key 'sentinels' must be a non-empty list"),
        (dict(sentinels="-1"), r"key 'sentinels' must be a non-empty list"),
        (
            dict(sentinels=[-999.9, np.float32(-999.9)]),
            r"key 'sentinels': -999.9 and -999.9\d+ are too close to tell apart",
        ),
        (
            dict(role="condition", sentinels=[-1], transforms=[{"type": "onehot"}]),
            r"key 'sentinels' is not allowed with a 'onehot' step",
        ),
    ],
)
def test_spec_errors_name_feature_and_key(kwargs, pattern):
    kwargs = {"role": "target", **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        FeatureSpec("x", **kwargs)


def test_spec_name_must_be_a_string():
    with pytest.raises(ConfigError, match="feature name"):
        FeatureSpec("", "target")


@pytest.mark.parametrize(
    ("d", "pattern"),
    [
        (
            {"name": "Jet_pt", "role": "target", "relative": "GenJet_pt"},
            r"feature 'Jet_pt': unknown key 'relative'.*did you mean 'relative_to'",
        ),
        ({"name": "Jet_pt"}, r"feature 'Jet_pt': missing key 'role'"),
        ({"role": "target"}, r"missing key 'name'"),
        (["Jet_pt"], r"must be a mapping"),
    ],
)
def test_spec_from_dict_errors(d, pattern):
    with pytest.raises(ConfigError, match=pattern):
        FeatureSpec.from_dict(d)


@pytest.mark.parametrize(
    ("features", "pattern"),
    [
        ([], r"no features"),
        (
            [FeatureSpec("Jet_pt", "target"), FeatureSpec("Jet_pt", "target")],
            r"feature 'Jet_pt': duplicate name \(features 1 and 2\)",
        ),
        (
            [
                FeatureSpec("GenJet_pt", "condition", "positive"),
                FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_ptt"),
            ],
            r"feature 'Jet_pt': key 'relative_to' names 'GenJet_ptt', which is not a feature.*did you mean 'GenJet_pt'",
        ),
        (
            [
                FeatureSpec("Jet_eta", "target"),
                FeatureSpec("Jet_phi", "target", relative_to="Jet_eta"),
            ],
            r"feature 'Jet_phi': key 'relative_to' names 'Jet_eta', which is a target; it must name a condition",
        ),
        (
            [
                FeatureSpec("GenJet_pt", "condition", "positive"),
                FeatureSpec("Jet_pt", "target", transforms=[{"type": "ratio", "to": "GenJet_p"}]),
            ],
            r"feature 'Jet_pt': key 'transforms' names 'GenJet_p'.*did you mean 'GenJet_pt'",
        ),
        (
            [
                FeatureSpec("GenJet_flav", "condition", "categorical"),
                FeatureSpec("Jet_x", "target", relative_to="GenJet_flav"),
            ],
            r"feature 'Jet_x': key 'relative_to' names 'GenJet_flav', which is categorical",
        ),
    ],
)
def test_schema_errors(features, pattern):
    with pytest.raises(ConfigError, match=pattern):
        FeatureSchema(features)


def test_schema_from_dict_errors():
    with pytest.raises(ConfigError, match=r"unknown key 'feature'.*did you mean 'features'"):
        FeatureSchema.from_dict({"feature": []})
    with pytest.raises(ConfigError, match="missing key 'features'"):
        FeatureSchema.from_dict({})
    with pytest.raises(ConfigError, match="must be a list"):
        FeatureSchema("Jet_pt")  # type: ignore[arg-type]


def test_explicit_relative_transform_is_a_reference():
    spec = FeatureSpec(
        "Jet_pt",
        "target",
        transforms=[{"type": "ratio", "to": "GenJet_pt"}, {"type": "log"}, {"type": "standardize"}],
    )
    assert spec.references == ("GenJet_pt",)
    assert FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt").references == (
        "GenJet_pt",
    )
