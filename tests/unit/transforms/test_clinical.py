"""Tests of omics_ml.transforms.clinical: unit-checked numbers and frozen one-hot categories."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import OneHotEncoder

from omics_ml.transforms.base import step_from_json
from omics_ml.transforms.clinical import ClinicalEncoder

RANGES = {"age_years": [0, 120], "bmi": [10, 80]}


def _development() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age_years": [34, 51, 67, 45, 72, 29, 58, 63],
            "sex": ["F", "M", "M", "F", "F", "M", "F", "M"],
            "bmi": [22.5, 31.0, 27.4, 24.1, 29.9, 21.0, 35.2, 26.6],
            "smoking": [
                "never",
                "current",
                "former",
                "never",
                "former",
                "never",
                "current",
                "never",
            ],
            "stage": [1, 2, 3, 1, 4, 2, 3, 1],
        }
    )


def _new() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age_years": [40, 80, 55],
            "sex": ["M", "F", "F"],
            "bmi": [23.0, 28.0, 33.3],
            "smoking": ["former", "occasional", "never"],
            "stage": [2, 1, 5],
        }
    )


def test_matches_sklearn_one_hot_encoder():
    dev, new = _development(), _new()
    enc = ClinicalEncoder(ranges=RANGES, categorical=["sex", "smoking", "stage"]).fit(dev)
    assert enc.categorical_columns_ == ["sex", "smoking", "stage"]
    assert enc.categories_["smoking"] == ["current", "former", "never"]
    assert enc.categories_["stage"] == ["1", "2", "3", "4"]
    cat_cols = enc.categorical_columns_
    ohe = OneHotEncoder(
        handle_unknown="ignore",
        categories=[enc.categories_[c] for c in cat_cols],
        sparse_output=False,
    ).fit(dev[cat_cols].astype(str))
    for frame in (dev, new):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ours = enc.transform(frame)
            theirs = ohe.transform(frame[cat_cols].astype(str))
        assert ours.dtype == np.float64
        names = list(enc.get_feature_names_out())
        cat_idx = [i for i, n in enumerate(names) if "=" in n]
        np.testing.assert_array_equal(ours[:, cat_idx], theirs)
        np.testing.assert_array_equal(ours[:, names.index("age_years")], frame["age_years"])
        np.testing.assert_array_equal(ours[:, names.index("bmi")], frame["bmi"])
        # sklearn's names use "_" as separator; ours use "="
        assert [n.replace("=", "_") for n in np.asarray(names)[cat_idx]] == list(
            ohe.get_feature_names_out(cat_cols)
        )


def test_feature_names_out():
    enc = ClinicalEncoder(ranges=RANGES).fit(_development())
    assert list(enc.get_feature_names_out()) == [
        "age_years",
        "sex=F",
        "sex=M",
        "bmi",
        "smoking=current",
        "smoking=former",
        "smoking=never",
        "stage",
    ]
    assert enc.get_feature_names_out().dtype == object
    assert list(enc.get_feature_names_out(["a", "b", "c", "d", "e"]))[:3] == ["a", "b=F", "b=M"]
    with pytest.raises(ValueError, match="input_features has 2 names"):
        enc.get_feature_names_out(["a", "b"])


def test_auto_detection_of_categorical_columns():
    dev = _development().assign(code=["1", "2", "x", "1", "2", "x", "1", "2"])
    enc = ClinicalEncoder().fit(dev)
    assert enc.categorical_columns_ == ["sex", "smoking", "code"]  # stage: all numbers
    assert enc.feature_names_in_.dtype == object
    assert list(enc.feature_names_in_) == list(dev.columns)
    assert enc.n_features_in_ == 6


def test_missing_values_give_nan_in_their_one_hot_columns():
    dev = _development()
    dev.loc[1, "sex"] = None
    dev.loc[2, "smoking"] = ""
    dev.loc[3, "smoking"] = np.nan
    dev.loc[4, "bmi"] = np.nan
    enc = ClinicalEncoder(ranges=RANGES).fit(dev)
    assert enc.categories_["sex"] == ["F", "M"]
    out = enc.transform(dev)
    names = list(enc.get_feature_names_out())
    sex = [names.index("sex=F"), names.index("sex=M")]
    smoking = [i for i, n in enumerate(names) if n.startswith("smoking=")]
    assert np.isnan(out[1, sex]).all()
    assert not np.isnan(out[1, smoking]).any()
    assert np.isnan(out[2, smoking]).all() and np.isnan(out[3, smoking]).all()
    assert np.isnan(out[4, names.index("bmi")])
    assert np.isnan(out).sum() == 2 + 3 + 3 + 1


def test_integer_and_float_codes_are_the_same_category():
    enc = ClinicalEncoder(categorical=["stage"]).fit(_development()[["stage"]])
    as_float = pd.DataFrame({"stage": [2.0, np.nan, 4.0]})
    as_int = pd.DataFrame({"stage": [2, 1, 4]})
    np.testing.assert_array_equal(enc.transform(as_float)[[0, 2]], enc.transform(as_int)[[0, 2]])
    assert np.isnan(enc.transform(as_float)[1]).all()


def test_columns_selected_by_name_and_arrays_by_position():
    dev = _development()
    enc = ClinicalEncoder(ranges=RANGES).fit(dev)
    expected = enc.transform(dev)
    np.testing.assert_array_equal(enc.transform(dev[dev.columns[::-1]]), expected)
    np.testing.assert_array_equal(enc.transform(dev.to_numpy(dtype=object)), expected)
    with pytest.raises(ValueError, match=r"lacks \['bmi'\] and has unexpected \[\]"):
        enc.transform(dev.drop(columns="bmi"))
    with pytest.raises(ValueError, match=r"lacks \[\] and has unexpected \['extra'\]"):
        enc.transform(dev.assign(extra=1))
    with pytest.raises(ValueError, match="fitted on 5 columns"):
        enc.transform(dev.to_numpy(dtype=object)[:, :4])


def test_unseen_category_warns_and_logs(caplog):
    enc = ClinicalEncoder(ranges=RANGES).fit(_development())
    new = pd.DataFrame(
        {
            "age_years": [40] * 8,
            "sex": ["M"] * 8,
            "bmi": [23.0] * 8,
            "smoking": ["s1", "s2", "s3", "s4", "s5", "s6", "s6", "never"],
            "stage": [1] * 8,
        }
    )
    with (
        caplog.at_level(logging.WARNING, logger="omics_ml.transforms.clinical"),
        pytest.warns(UserWarning, match=r"'smoking' has 7 sample\(s\) with categories not seen"),
    ):
        out = enc.transform(new)
    names = list(enc.get_feature_names_out())
    smoking = [i for i, n in enumerate(names) if n.startswith("smoking=")]
    np.testing.assert_array_equal(out[:7, smoking], 0.0)
    np.testing.assert_array_equal(out[7, smoking], [0.0, 0.0, 1.0])
    records = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "'smoking'" in message and "7 sample(s)" in message
    assert "'s1', 's2', 's3', 's4', 's5' and 1 more" in message


def test_no_warning_for_known_categories(recwarn):
    enc = ClinicalEncoder(ranges=RANGES).fit(_development())
    enc.transform(_development())
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("stage", ["fit", "transform"])
def test_value_outside_range_names_units(stage):
    dev = _development()
    bad = dev.copy()
    bad.loc[2, "age_years"] = 804  # months, not years
    enc = ClinicalEncoder(ranges=RANGES)
    pattern = (
        r"'age_years', row 2: value 804 is outside the plausible range \[0, 120\].*Check the units"
    )
    if stage == "fit":
        with pytest.raises(ValueError, match=pattern):
            enc.fit(bad)
    else:
        enc.fit(dev)
        with pytest.raises(ValueError, match=pattern):
            enc.transform(bad)


def test_range_error_names_index_label():
    dev = _development().set_index(pd.Index([f"s{i}" for i in range(8)]))
    dev.loc["s5", "bmi"] = 5.0
    with pytest.raises(ValueError, match=r"'bmi', row 5 \(index 's5'\): value 5 is outside"):
        ClinicalEncoder(ranges=RANGES).fit(dev)


@pytest.mark.parametrize("stage", ["fit", "transform"])
def test_text_in_numeric_column(stage):
    dev = _development()
    bad = dev.astype({"bmi": object})
    bad.loc[1, "bmi"] = "obese"
    enc = ClinicalEncoder(ranges=RANGES)
    pattern = r"column 'bmi' is numeric but row 1 holds 'obese'"
    if stage == "fit":
        with pytest.raises(ValueError, match=pattern):
            enc.fit(bad)
    else:
        enc.fit(dev)
        with pytest.raises(ValueError, match=pattern):
            enc.transform(bad)


def test_text_in_column_not_listed_as_categorical():
    with pytest.raises(
        ValueError, match=r"column 'sex' is numeric but row 0 holds 'F'.*categorical"
    ):
        ClinicalEncoder(categorical=["smoking"]).fit(_development())


def test_too_many_categories():
    dev = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(60)], "age_years": 50})
    with pytest.raises(
        ValueError, match=r"60 distinct values.*max_categories=50.*really categorical"
    ):
        ClinicalEncoder().fit(dev)
    enc = ClinicalEncoder(max_categories=60).fit(dev)
    assert len(enc.categories_["patient_id"]) == 60


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"ranges": {"age": [0, 120]}}, r"ranges name columns \['age'\] that are not in"),
        ({"ranges": {"bmi": [80, 10]}}, "min <= max"),
        ({"ranges": {"bmi": "10-80"}}, r"must be \[min, max\] numbers"),
        ({"categorical": ["smoker"]}, r"categorical names columns \['smoker'\]"),
        ({"categorical": "sex"}, "must be a list of column names"),
        ({"categorical": ["sex", "bmi"], "ranges": RANGES}, "both in categorical and in ranges"),
        ({"max_categories": 0}, "max_categories must be an integer >= 1"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        ClinicalEncoder(**params).fit(_development())


def test_all_missing_categorical_column():
    dev = _development().assign(grade=None)
    with pytest.raises(ValueError, match="'grade' has only missing values"):
        ClinicalEncoder(categorical=["sex", "smoking", "grade"]).fit(dev)


def test_json_round_trip():
    dev = _development()
    dev.loc[0, "smoking"] = None
    enc = ClinicalEncoder(ranges=RANGES, categorical=["sex", "smoking", "stage"]).fit(dev)
    state = json.loads(json.dumps(enc.to_json()))
    assert state["state"]["categories_"]["stage"] == ["1", "2", "3", "4"]
    restored = step_from_json(state)
    assert isinstance(restored, ClinicalEncoder)
    assert restored.get_params() == enc.get_params()
    np.testing.assert_array_equal(restored.feature_names_in_, enc.feature_names_in_)
    np.testing.assert_array_equal(restored.get_feature_names_out(), enc.get_feature_names_out())
    new = pd.concat([dev, _new()], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(restored.transform(new), enc.transform(new))
    with pytest.raises(ValueError, match=r"outside the plausible range \[10, 80\]"):
        restored.transform(new.assign(bmi=200.0))


_AGE = st.one_of(st.floats(0.0, 120.0, allow_nan=False), st.none(), st.just(""))
_SEX = st.sampled_from(["F", "M", " F ", "X", "unknown", None, "", np.nan])


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.tuples(_AGE, _SEX), min_size=1, max_size=8), row=st.integers(0, 100))
def test_row_independent(rows, row):
    enc = ClinicalEncoder(ranges={"age_years": [0, 120]}, categorical=["sex"]).fit(
        _development()[["age_years", "sex"]]
    )
    frame = pd.DataFrame(rows, columns=["age_years", "sex"])
    i = row % len(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        whole = enc.transform(frame)
        alone = enc.transform(frame.iloc[[i]])
    assert whole.shape == (len(frame), 3)
    np.testing.assert_array_equal(alone, whole[i : i + 1])
