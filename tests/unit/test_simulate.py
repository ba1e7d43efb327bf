"""The cohort simulator: the input format, each assay's structure, and the known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from omics_ml.cli import main
from omics_ml.io import read_json
from omics_ml.simulate import SimulationSpec, simulate_cohort

FEATURES = {"rnaseq": 300, "proteomics": 120, "metabolomics": 60, "methylation": 40, "genotype": 30}


def _spec(**changes: object) -> SimulationSpec:
    values = {"n_subjects": 300, "n_visits": 2, "features": dict(FEATURES), "seed": 5}
    values.update(changes)
    return SimulationSpec(**values)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("sim")
    return directory, simulate_cohort(directory, _spec(task="survival"))


def _matrix(directory: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(directory / f"{name}.parquet").set_index("sample_id")


def _subject_scores(directory: Path, index: pd.Index) -> np.ndarray:
    samples = pd.read_csv(directory / "samples.csv").set_index("sample_id")
    truth = pd.read_parquet(directory / "truth.parquet").set_index("subject_id")
    return truth.loc[samples.loc[index, "subject_id"], "score"].to_numpy()


def test_same_seed_same_cohort_other_seed_other_cohort(tmp_path: Path) -> None:
    small = {"n_subjects": 40, "n_visits": 1, "features": {"rnaseq": 50, "proteomics": 20}}
    simulate_cohort(tmp_path / "a", _spec(**small))
    simulate_cohort(tmp_path / "b", _spec(**small))
    simulate_cohort(tmp_path / "c", _spec(**small, seed=6))
    for name in ("rnaseq", "proteomics"):
        a, b, c = (_matrix(tmp_path / d, name) for d in "abc")
        pd.testing.assert_frame_equal(a, b)
        assert not a.equals(c)
    for name in ("samples.csv", "outcomes.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_files_ids_and_visits_fit_the_input_contract(cohort: tuple[Path, dict]) -> None:
    directory, truth = cohort
    samples = pd.read_csv(directory / "samples.csv")
    outcomes = pd.read_csv(directory / "outcomes.csv").set_index("subject_id")
    assert samples["sample_id"].is_unique
    assert set(samples["subject_id"]) <= set(outcomes.index)
    # No visit after the subject's event or censoring.
    follow_up = outcomes.loc[samples["subject_id"], "time"].to_numpy()
    assert (samples["visit_time"].to_numpy() <= follow_up).all()
    assert truth["n_samples"] == len(samples)
    for name in [*FEATURES, "clinical", "marker"]:
        matrix = _matrix(directory, name)
        assert list(matrix.index) == list(samples["sample_id"]), name
    assert set(outcomes["event"]) <= {0, 1} and (outcomes["time"] > 0).all()
    assert set(pd.read_csv(directory / "outcomes.csv")["label"]) == {"case", "control"}


def test_rnaseq_counts_are_overdispersed_with_spread_library_sizes(
    cohort: tuple[Path, dict],
) -> None:
    directory, _ = cohort
    counts = _matrix(directory, "rnaseq")
    assert all(dtype == np.int32 for dtype in counts.dtypes)
    assert (counts.to_numpy() >= 0).all()
    library = counts.sum(axis=1)
    assert np.quantile(library, 0.975) / np.quantile(library, 0.025) > 4
    expressed = counts.loc[:, counts.mean() > 20]
    normalised = expressed.div(library / library.mean(), axis=0)
    assert (normalised.var() > 2 * normalised.mean()).mean() > 0.9  # far from Poisson


def test_proteomics_missing_values_are_left_censored(cohort: tuple[Path, dict]) -> None:
    directory, _ = cohort
    intensities = _matrix(directory, "proteomics")
    missing = intensities.isna().mean()
    assert 0.02 < missing.mean() < 0.6
    abundance = np.log2(intensities).median()
    observed = missing.between(0.01, 0.99)
    rho = stats.spearmanr(abundance[observed], missing[observed]).statistic
    assert rho < -0.6


def test_metabolomics_carry_the_sample_dilution(cohort: tuple[Path, dict]) -> None:
    directory, _ = cohort
    log_values = np.log(_matrix(directory, "metabolomics"))
    median_log_ratio = (log_values - log_values.median()).median(axis=1)
    dilution = pd.read_parquet(directory / "sample_truth.parquet").set_index("sample_id")
    r = np.corrcoef(median_log_ratio, np.log(dilution.loc[log_values.index, "dilution"]))[0, 1]
    assert r > 0.9


def test_methylation_betas_and_genotype_dosages_are_in_range(cohort: tuple[Path, dict]) -> None:
    directory, _ = cohort
    betas = _matrix(directory, "methylation").to_numpy()
    assert ((betas > 0) & (betas < 1)).all()
    dosages = _matrix(directory, "genotype")
    assert set(np.unique(dosages.to_numpy())) <= {0.0, 1.0, 2.0}
    samples = pd.read_csv(directory / "samples.csv").set_index("sample_id")
    per_subject = dosages.groupby(samples.loc[dosages.index, "subject_id"].to_numpy()).nunique()
    assert (per_subject == 1).all().all()  # germline: the same at every visit


def test_informative_features_carry_the_score_and_the_others_do_not(
    cohort: tuple[Path, dict],
) -> None:
    directory, truth = cohort
    for name in ("rnaseq", "proteomics", "metabolomics", "methylation"):
        matrix = _matrix(directory, name)
        values = np.log1p(matrix.fillna(matrix.min())) if name != "methylation" else matrix
        score = _subject_scores(directory, matrix.index)
        r = values.apply(lambda column, s=score: abs(np.corrcoef(column, s)[0, 1]))
        picked = [c.split(":", 1)[1] for c in truth["informative_features"][name]]
        assert len(picked) == 10
        assert r[picked].median() > 3 * r.drop(index=picked).median(), name


def test_no_signal_gives_no_association(tmp_path: Path) -> None:
    truth = simulate_cohort(tmp_path, _spec(signal=0.0, n_visits=1))
    matrix = np.log1p(_matrix(tmp_path, "rnaseq"))
    score = _subject_scores(tmp_path, matrix.index)
    picked = [c.split(":", 1)[1] for c in truth["informative_features"]["rnaseq"]]
    r = matrix[picked].apply(lambda column: abs(np.corrcoef(column, score)[0, 1]))
    assert r.max() < 0.25  # 300 subjects: |r| of pure noise stays below ~0.2
    outcomes = pd.read_csv(tmp_path / "outcomes.csv")
    case = (outcomes["label"] == "case").to_numpy()
    truth_frame = pd.read_parquet(tmp_path / "truth.parquet")
    assert abs(stats.pointbiserialr(case, truth_frame["score"]).statistic) < 0.2


def test_treatment_effect_varies_with_the_modifier_only_when_asked(tmp_path: Path) -> None:
    record = simulate_cohort(tmp_path / "het", _spec(heterogeneity=0.5))
    assert record["effect_modifier"].startswith("genotype:")
    truth = pd.read_parquet(tmp_path / "het" / "truth.parquet")
    genotype = _matrix(tmp_path / "het", "genotype")
    samples = pd.read_csv(tmp_path / "het" / "samples.csv").set_index("sample_id")
    modifier = genotype[record["effect_modifier"].split(":", 1)[1]]
    alleles = modifier.groupby(samples.loc[modifier.index, "subject_id"].to_numpy()).first()
    effect = truth.set_index("subject_id")["treatment_log_hr"].loc[alleles.index]
    assert np.corrcoef(alleles, effect)[0, 1] > 0.99
    simulate_cohort(tmp_path / "flat", _spec(heterogeneity=0.0))
    flat = pd.read_parquet(tmp_path / "flat" / "truth.parquet")
    assert flat["treatment_log_hr"].nunique() == 1


def test_configs_per_task(tmp_path: Path) -> None:
    import yaml

    for task in ("classification", "survival", "regression"):
        simulate_cohort(tmp_path / task, _spec(task=task, n_visits=3))
        config = yaml.safe_load((tmp_path / task / "config.yaml").read_text())
        assert config["task"] == task
        assert set(config["modalities"]) == {*FEATURES, "clinical", "marker"}
    regression = yaml.safe_load((tmp_path / "regression" / "config.yaml").read_text())
    assert regression["longitudinal"]["target"] == {
        "feature": "marker:marker",
        "horizon": 6.0,
        "window": 3.0,
    }
    assert regression["longitudinal"]["landmarks"] == [6.0]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"n_subjects": 5}, "n_subjects"),
        ({"features": {"lipidomics": 10}}, "features"),
        ({"features": {"rnaseq": 0}}, "features"),
        ({"task": "ranking"}, "task"),
        ({"n_covariates": -1}, "n_covariates"),
        ({"task": "regression", "n_visits": 1}, "n_visits"),
    ],
)
def test_bad_specs_name_the_field(tmp_path: Path, changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        simulate_cohort(tmp_path, _spec(**changes))


def test_cli_writes_a_runnable_cohort_and_rejects_bad_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["simulate", "--output", str(tmp_path / "cli"), "--subjects", "30", "--visits", "1"]
    assert main([*argv, "--features", "proteomics=25", "metabolomics=10", "--seed", "2"]) == 0
    assert "snakemake --profile profiles/local --configfile" in capsys.readouterr().out
    assert read_json(tmp_path / "cli" / "truth.json")["spec"]["features"] == {
        "proteomics": 25,
        "metabolomics": 10,
    }
    assert main([*argv, "--features", "proteomics"]) == 2
    assert "MODALITY=N" in capsys.readouterr().err


def test_extra_covariates_are_per_subject_partly_missing_and_the_first_carry_the_score(
    tmp_path: Path,
) -> None:
    simulate_cohort(
        tmp_path, _spec(n_subjects=400, features={"proteomics": 20}, n_covariates=6, seed=3)
    )
    clinical = _matrix(tmp_path, "clinical")
    labs = clinical[[f"lab{j:03d}" for j in range(1, 7)]]
    assert list(clinical.columns[:4]) == ["age", "sex", "bmi", "arm"]
    assert 0.02 < labs.isna().to_numpy().mean() < 0.08
    score = _subject_scores(tmp_path, clinical.index)
    rho = [stats.spearmanr(labs[c], score, nan_policy="omit")[0] for c in labs.columns]
    assert min(rho[:3]) > 0.25
    assert max(abs(r) for r in rho[3:]) < 0.15
    samples = pd.read_csv(tmp_path / "samples.csv").set_index("sample_id")
    subject = samples.loc[clinical.index, "subject_id"]
    spread = labs.groupby(subject.to_numpy()).std().fillna(0.0).to_numpy()
    assert np.nanmax(spread) < 1e-6


def test_true_risk_per_arm_matches_the_kaplan_meier_risk_of_the_drawn_times(tmp_path: Path) -> None:
    from omics_ml.benefit import km_risk
    from omics_ml.simulate import true_risk

    spec = _spec(
        n_subjects=6000,
        n_visits=1,
        features={"rnaseq": 5, "genotype": 3},
        heterogeneity=1.0,
        treatment_effect=-0.5,
        what_if=True,
    )
    simulate_cohort(tmp_path, spec)
    truth = pd.read_parquet(tmp_path / "truth.parquet")
    outcomes = pd.read_csv(tmp_path / "outcomes.csv")
    for arm in (0, 1):
        rows = (truth["arm"] == arm).to_numpy()
        expected = true_risk(truth[rows], 24.0, treated=bool(arm)).mean()
        observed, variance = km_risk(outcomes["time"][rows], outcomes["event"][rows], 24.0)
        assert abs(observed - expected) < 4 * np.sqrt(variance)
    benefit = true_risk(truth, 24.0, treated=False) - true_risk(truth, 24.0, treated=True)
    assert benefit.std() > 0.05  # the modifier makes the benefit differ between subjects
    import yaml

    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["treatment"] == {"column": "clinical:arm", "arms": [0, 1], "randomised": True}
