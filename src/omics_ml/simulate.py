"""A seeded multi-omics cohort in the pipeline's input format, with a known truth.

:func:`simulate_cohort` writes what a real cohort would hand the workflow: a sample sheet (one
row per visit, with batch), per-subject outcomes, one samples-in-rows Parquet matrix per
modality, a ``config.yaml`` that runs the workflow on them, and the truth the data were drawn
from (``truth.json``; ``truth.parquet`` per subject: latent score, arm, individual treatment log
hazard ratio, log hazard without treatment, marker slope, event time; :func:`true_risk` turns
them into each subject's true risk by a horizon under either arm; ``sample_truth.parquet`` per sample: library size,
dilution, batch), which the workflow never reads.

Each subject has a latent disease score ``s`` (standard normal). A few features per modality
(``n_informative``, at random positions) move with ``s``; everything else is noise with the
structure of its assay:

- RNA-seq counts: gamma-Poisson (negative binomial) with gene-wise dispersions, log-normal
  library sizes (about 8-fold spread) and batch shifts;
- proteomics: log-normal intensities with left-censored missing values whose probability rises as
  the abundance falls, and batch shifts;
- metabolomics: log-normal abundances times a per-sample dilution factor (what PQN removes);
- methylation: beta values in (0, 1) from logistic M-values;
- genotype: dosages 0/1/2 by Hardy-Weinberg from a minor-allele frequency per variant, the same
  at every visit of a subject;
- clinical: age, sex, BMI and a randomised treatment ``arm`` (0/1), constant per subject, and a
  ``marker`` (its own modality) measured at every visit, whose slope depends on ``s`` and on
  the arm.

Outcomes per subject: ``label`` (``case``/``control`` from ``s``) and ``time``/``event``
(Weibull survival with hazard ratio ``exp(hazard_effect * s)`` and a treatment effect on the log
hazard that varies with one genotype, ``effect_modifier``; uniform censoring). No visit lies
after a subject's event or censoring. The regression task predicts the marker's value at the last
visit from the visits up to the middle one. ``signal = 0`` makes every outcome independent of
every omics feature (a negative control); ``heterogeneity = 0`` makes the treatment effect the
same for all. Large matrices are drawn and written in blocks of samples, so memory stays near one
block.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from numpy.typing import NDArray

from omics_ml.io import atomic_output, write_json

__all__ = ["MODALITY_TYPES", "SimulationSpec", "simulate_cohort", "true_risk"]

#: Simulated modality -> the config's ``type`` (which picks its default normalisation).
MODALITY_TYPES = {
    "rnaseq": "rnaseq_counts",
    "proteomics": "proteomics",
    "metabolomics": "metabolomics",
    "methylation": "methylation",
    "genotype": "genotype",
}
TASKS = ("classification", "survival", "regression")
#: Samples drawn and written at a time.
BLOCK_ROWS = 2048
#: Weibull shape and scale (months) of the event times.
WEIBULL_SHAPE, WEIBULL_SCALE = 1.3, 40.0


@dataclass
class SimulationSpec:
    """Sizes and effects of a simulated cohort (every field has a default).

    Attributes
    ----------
    n_subjects, n_visits : int
        Subjects, and visits per subject (months 0, ``visit_interval``, 2 x ...).
    features : dict
        Features per modality (keys of :data:`MODALITY_TYPES`); 0 leaves a modality out.
    n_covariates : int
        Extra numeric clinical covariates (``lab001``, ...) on top of age, sex, BMI and arm:
        standard-normal per subject, 5% missing at random; the first three carry the score.
    n_informative : int
        Features per modality that carry the latent score.
    signal : float
        Effect of the latent score on the informative features (in noise SDs); 0 for none.
    n_batches : int
        Batches, assigned at random to samples.
    hazard_effect, treatment_effect, heterogeneity : float
        Log hazard ratio per SD of the score; of the treatment arm; and how much the arm's log
        hazard ratio changes per copy of the modifier allele.
    censoring_time : float
        Follow-up ends uniformly between half of it and it (months).
    task : str
        Task written into ``config.yaml`` (all outcomes are written whatever it is).
    what_if : bool
        Write a ``treatment`` section (``clinical:arm``, arms 0 and 1, randomised) into
        ``config.yaml``, so the run evaluates what-if predictions against the truth's effects.
    seed : int
        Seed of every draw.
    """

    n_subjects: int = 500
    n_visits: int = 3
    visit_interval: float = 6.0
    features: dict[str, int] = field(
        default_factory=lambda: {
            "rnaseq": 5000,
            "proteomics": 500,
            "metabolomics": 200,
            "methylation": 0,
            "genotype": 0,
        }
    )
    n_covariates: int = 0
    n_informative: int = 10
    signal: float = 1.0
    n_batches: int = 3
    hazard_effect: float = 0.7
    treatment_effect: float = -0.3
    heterogeneity: float = 0.4
    censoring_time: float = 60.0
    task: str = "classification"
    what_if: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field that is out of range."""
        unknown = sorted(set(self.features) - set(MODALITY_TYPES))
        if unknown:
            msg = f"features: unknown modalities {unknown}; choose from {sorted(MODALITY_TYPES)}."
            raise ValueError(msg)
        if self.n_covariates < 0:
            msg = f"n_covariates must be >= 0, got {self.n_covariates}."
            raise ValueError(msg)
        for name in ("n_subjects", "n_visits", "n_batches"):
            if getattr(self, name) < 1:
                msg = f"{name} must be at least 1, got {getattr(self, name)}."
                raise ValueError(msg)
        if self.n_subjects < 20:
            msg = f"n_subjects must be at least 20 for a usable cohort, got {self.n_subjects}."
            raise ValueError(msg)
        if any(n < 0 for n in self.features.values()) or not any(self.features.values()):
            msg = f"features: counts must be >= 0 and at least one positive, got {self.features}."
            raise ValueError(msg)
        if self.task not in TASKS:
            msg = f"task must be one of {TASKS}, got {self.task!r}."
            raise ValueError(msg)
        if self.task == "regression" and self.n_visits < 2:
            msg = "task regression predicts a future marker value: n_visits must be at least 2."
            raise ValueError(msg)


def _sigmoid(x: NDArray[np.floating]) -> NDArray[np.floating]:
    return 1.0 / (1.0 + np.exp(-x))


class _Cohort:
    """Subject-level draws shared by every modality."""

    def __init__(self, spec: SimulationSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        n, v = spec.n_subjects, spec.n_visits
        self.subjects = np.array([f"P{i:06d}" for i in range(n)])
        self.score = rng.standard_normal(n)
        self.arm = rng.integers(0, 2, n)
        self.visit_times = np.tile(np.arange(v) * spec.visit_interval, n)
        self.subject_of_sample = np.repeat(np.arange(n), v)
        self.sample_ids = np.char.add(
            np.repeat(self.subjects, v), np.char.add("_v", np.tile(np.arange(v).astype(str), n))
        )
        self.batch = rng.integers(0, spec.n_batches, n * v)
        self.library_size = np.exp(rng.normal(np.log(2e7), 0.55, n * v))  # ~8-fold 95% range
        self.dilution = np.exp(rng.normal(0.0, 0.35, n * v))
        # Alleles of the variant that modifies the treatment effect (minor-allele frequency 0.3).
        self.modifier = rng.binomial(2, 0.3, n).astype(np.float64)

    def drop_samples(self, keep: NDArray[np.bool_]) -> None:
        """Keep only these visits (a subject has no visit after its event or censoring)."""
        for name in ("visit_times", "subject_of_sample", "sample_ids", "batch"):
            setattr(self, name, getattr(self, name)[keep])
        self.library_size = self.library_size[keep]
        self.dilution = self.dilution[keep]

    @property
    def n_samples(self) -> int:
        return self.sample_ids.size

    def sample_score(self, rows: slice) -> NDArray[np.float64]:
        """The latent score of each sample's subject, times the signal strength."""
        return self.spec.signal * self.score[self.subject_of_sample[rows]]


def _informative(rng: np.random.Generator, n_features: int, k: int) -> NDArray[np.int64]:
    return np.sort(rng.choice(n_features, size=min(k, n_features), replace=False))


def _write_blocks(path: Path, names: list[str], blocks: Any) -> None:
    """Write ``sample_id`` plus float32/int32 feature blocks as one Parquet file, atomically."""
    with atomic_output(path) as tmp:
        writer = None
        try:
            for ids, values in blocks:
                columns = [pa.array(ids)] + [pa.array(values[:, j]) for j in range(values.shape[1])]
                table = pa.Table.from_arrays(columns, names=["sample_id", *names])
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()


def _modality_blocks(
    kind: str, cohort: _Cohort, n_features: int, informative: NDArray[np.int64], seed: int
) -> Any:
    """Yield (sample ids, values) per block of samples for one modality."""
    spec = cohort.spec
    rng = np.random.default_rng([spec.seed, seed])
    loading = np.zeros(n_features)
    loading[informative] = rng.choice([-1.0, 1.0], informative.size)
    batch_shift = rng.normal(0.0, 0.3, (spec.n_batches, n_features))
    if kind == "rnaseq":
        log_p = rng.normal(0.0, 1.5, n_features)
        base = np.exp(log_p) / np.exp(log_p).sum()
        dispersion = np.exp(rng.normal(np.log(0.15), 0.6, n_features))
    elif kind == "proteomics":
        mean = rng.normal(22.0, 2.5, n_features)  # log2 intensity
    elif kind == "metabolomics":
        mean = rng.normal(10.0, 1.5, n_features)  # natural-log abundance
    elif kind == "methylation":
        mean = rng.normal(0.0, 2.0, n_features)  # M-value
    elif kind == "genotype":
        maf = rng.uniform(0.05, 0.5, n_features)
        # Dosages are germline: drawn per subject, repeated at each of its visits.
        dosage = rng.binomial(2, maf, (spec.n_subjects, n_features)).astype(np.float32)
    for start in range(0, cohort.n_samples, BLOCK_ROWS):
        rows = slice(start, min(start + BLOCK_ROWS, cohort.n_samples))
        m = rows.stop - rows.start
        s = cohort.sample_score(rows)[:, None]
        signal = s * loading[None, :]
        shift = batch_shift[cohort.batch[rows]]
        if kind == "rnaseq":
            mu = cohort.library_size[rows, None] * base[None, :] * np.exp(signal + shift)
            shape = 1.0 / dispersion
            lam = rng.standard_gamma(np.broadcast_to(shape, (m, n_features))) * (mu / shape)
            values = rng.poisson(lam).astype(np.int32)
        elif kind == "proteomics":
            log2 = mean[None, :] + 0.8 * signal + shift + rng.normal(0.0, 0.6, (m, n_features))
            # Left-censored: the lower the abundance, the likelier it is missing.
            p_missing = _sigmoid((19.5 - log2) / 0.8)
            values = np.exp2(log2).astype(np.float32)
            values[rng.random((m, n_features)) < p_missing] = np.nan
        elif kind == "metabolomics":
            log = mean[None, :] + 0.6 * signal + 0.5 * shift + rng.normal(0.0, 0.5, (m, n_features))
            values = (np.exp(log) * cohort.dilution[rows, None]).astype(np.float32)
        elif kind == "methylation":
            mval = (
                mean[None, :] + 0.8 * signal + 0.3 * shift + rng.normal(0.0, 0.5, (m, n_features))
            )
            values = _sigmoid(mval).astype(np.float32)
        else:  # genotype; the first "informative" variant is the treatment-effect modifier
            values = dosage[cohort.subject_of_sample[rows]]
            if informative.size:
                values[:, informative[0]] = cohort.modifier[cohort.subject_of_sample[rows]]
        yield cohort.sample_ids[rows], values


def _outcomes(
    cohort: _Cohort, modifier: NDArray[np.float64] | None
) -> tuple[pd.DataFrame, pd.DataFrame, NDArray[np.float64]]:
    """Subject outcomes, the truth behind them, and each visit's marker value.

    ``modifier`` (allele counts per subject, or None without a genotype modality) changes the
    treatment's log hazard ratio and the marker's response to treatment.
    """
    spec = cohort.spec
    rng = np.random.default_rng([spec.seed, 1])
    n = spec.n_subjects
    s = spec.signal * cohort.score
    label = np.where(rng.random(n) < _sigmoid(1.5 * s), "case", "control")
    m = np.zeros(n) if modifier is None else modifier - modifier.mean()
    effect = spec.treatment_effect + spec.heterogeneity * m  # log HR of the arm, per subject
    log_hazard = spec.hazard_effect * s + effect * cohort.arm
    shape, scale = WEIBULL_SHAPE, WEIBULL_SCALE
    event_time = scale * (-np.log(rng.random(n)) / np.exp(log_hazard)) ** (1 / shape)
    censor = rng.uniform(spec.censoring_time / 2, spec.censoring_time, n)
    time = np.minimum(event_time, censor)
    event = (event_time <= censor).astype(int)
    # Marker: subject intercept and a slope from the score and the arm (heterogeneous).
    intercept = 20.0 + rng.normal(0.0, 2.0, n)
    slope = -0.15 * s + 0.1 * cohort.arm * (1.0 + spec.heterogeneity * m)
    marker = (
        intercept[cohort.subject_of_sample]
        + slope[cohort.subject_of_sample] * cohort.visit_times
        + rng.normal(0.0, 0.8, cohort.n_samples)
    )
    outcomes = pd.DataFrame(
        {
            "subject_id": cohort.subjects,
            "label": label,
            "time": np.round(np.maximum(time, 0.01), 3),
            "event": event,
        }
    )
    truth = pd.DataFrame(
        {
            "subject_id": cohort.subjects,
            "score": cohort.score,
            "arm": cohort.arm,
            "treatment_log_hr": effect,
            "log_hazard_control": spec.hazard_effect * s,
            "marker_slope": slope,
            "event_time": event_time,
        }
    )
    return outcomes, truth, marker


def true_risk(truth: pd.DataFrame, horizon: float, *, treated: bool) -> NDArray[np.float64]:
    """Each subject's true probability of the event by ``horizon`` under one arm.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``truth.parquet`` of :func:`simulate_cohort` (``log_hazard_control``,
        ``treatment_log_hr``).
    horizon : float
        Months from baseline.
    treated : bool
        Arm 1 (True) or arm 0.
    """
    log_hazard = truth["log_hazard_control"].to_numpy(np.float64)
    if treated:
        log_hazard = log_hazard + truth["treatment_log_hr"].to_numpy(np.float64)
    cumulative = (horizon / WEIBULL_SCALE) ** WEIBULL_SHAPE * np.exp(log_hazard)
    return 1.0 - np.exp(-cumulative)


def _config(spec: SimulationSpec, directory: Path, modalities: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "seed": spec.seed,
        "task": spec.task,
        "cohort": {
            "samples": str(directory / "samples.csv"),
            "outcomes": str(directory / "outcomes.csv"),
            "outcome_id_column": "subject_id",
        },
        "modalities": {
            name: {
                "path": str(directory / f"{name}.parquet"),
                "type": MODALITY_TYPES[name],
                "orientation": "samples_in_rows",
                "id_column": "sample_id",
            }
            for name in modalities
        },
        "split": {"holdout_fraction": 0.2, "n_splits": 5},
        "tracking": {
            "experiment_name": f"omics-ml-simulated-{spec.task}",
            "model_name": f"simulated_{spec.task}",
        },
    }
    for name in ("clinical", "marker"):
        config["modalities"][name] = {
            "path": str(directory / f"{name}.parquet"),
            "type": "clinical",
            "orientation": "samples_in_rows",
            "id_column": "sample_id",
        }
    if spec.what_if:
        config["treatment"] = {"column": "clinical:arm", "arms": [0, 1], "randomised": True}
    if spec.task == "classification":
        config["cohort"]["outcome_column"] = "label"
    elif spec.task == "survival":
        config["cohort"].update(time_column="time", event_column="event")
    last_visit = float((spec.n_visits - 1) * spec.visit_interval)
    if spec.task == "regression":
        # The marker's value at the last visit, from the visits up to the middle one.
        landmark = float((spec.n_visits - 1) // 2 * spec.visit_interval)
        config["cohort"].update(time_column="time", event_column="event")
        config["longitudinal"] = {
            "landmarks": [landmark],
            "summarise": ["marker"],
            "target": {
                "feature": "marker:marker",
                "horizon": last_visit - landmark,
                "window": spec.visit_interval / 2,
            },
        }
    elif spec.n_visits > 1:
        config["longitudinal"] = {"landmarks": [last_visit], "summarise": ["marker"]}
    return config


def simulate_cohort(
    directory: str | os.PathLike[str], spec: SimulationSpec | None = None
) -> dict[str, Any]:
    """Write a simulated cohort, its workflow config and its truth to ``directory``.

    Parameters
    ----------
    directory : path
        Output folder (created).
    spec : SimulationSpec, optional
        Sizes, effects, task and seed; the defaults give the benchmark's S cohort.

    Returns
    -------
    dict
        ``truth.json``'s content: the spec, the informative features per modality, the
        effect modifier, and the written files.

    Raises
    ------
    ValueError
        If a field of ``spec`` is out of range (the message names it).
    """
    spec = spec or SimulationSpec()
    spec.validate()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cohort = _Cohort(spec)
    modalities = [name for name, n in spec.features.items() if n > 0]
    with_modifier = "genotype" in modalities
    outcomes, truth, marker = _outcomes(cohort, cohort.modifier if with_modifier else None)
    # No visit after a subject's event or end of follow-up.
    keep = cohort.visit_times <= outcomes["time"].to_numpy()[cohort.subject_of_sample]
    marker = marker[keep]
    cohort.drop_samples(keep)
    informative: dict[str, list[str]] = {}
    modifier_name = None
    for position, name in enumerate(modalities, start=2):
        n_features = spec.features[name]
        rng = np.random.default_rng([spec.seed, position, 0])
        picked = _informative(rng, n_features, spec.n_informative)
        names = [f"{name[:4]}{j:05d}" for j in range(n_features)]
        _write_blocks(
            out / f"{name}.parquet",
            names,
            _modality_blocks(name, cohort, n_features, picked, position),
        )
        if name == "genotype":
            # Genotypes carry no score signal; their first picked variant modifies the
            # treatment effect.
            modifier_name = f"genotype:{names[picked[0]]}"
            informative[name] = []
        else:
            informative[name] = [f"{name}:{names[j]}" for j in picked]
    rng = np.random.default_rng([spec.seed, 99])
    n = spec.n_subjects
    age = rng.normal(60.0, 10.0, n) + 2.0 * spec.signal * cohort.score
    clinical = pd.DataFrame(
        {
            "sample_id": cohort.sample_ids,
            "age": np.round(age[cohort.subject_of_sample], 1),
            "sex": np.where(rng.random(n) < 0.5, "female", "male")[cohort.subject_of_sample],
            "bmi": np.round(rng.normal(27.0, 4.0, n), 1)[cohort.subject_of_sample],
            "arm": cohort.arm[cohort.subject_of_sample],
        }
    )
    if spec.n_covariates:
        labs = rng.normal(0.0, 1.0, (n, spec.n_covariates))
        k = min(3, spec.n_covariates)
        labs[:, :k] += 0.5 * spec.signal * cohort.score[:, None]
        labs = labs[cohort.subject_of_sample].astype(np.float32)
        labs[rng.random(labs.shape) < 0.05] = np.nan
        names = [f"lab{j + 1:03d}" for j in range(spec.n_covariates)]
        clinical = pd.concat([clinical, pd.DataFrame(labs, columns=names)], axis=1)
    with atomic_output(out / "clinical.parquet") as tmp:
        clinical.to_parquet(tmp, index=False)
    with atomic_output(out / "marker.parquet") as tmp:
        pd.DataFrame({"sample_id": cohort.sample_ids, "marker": np.round(marker, 3)}).to_parquet(
            tmp, index=False
        )
    samples = pd.DataFrame(
        {
            "sample_id": cohort.sample_ids,
            "subject_id": cohort.subjects[cohort.subject_of_sample],
            "visit_time": cohort.visit_times,
            "batch": np.char.add("b", cohort.batch.astype(str)),
        }
    )
    with atomic_output(out / "samples.csv") as tmp:
        samples.to_csv(tmp, index=False)
    with atomic_output(out / "outcomes.csv") as tmp:
        outcomes.to_csv(tmp, index=False)
    with atomic_output(out / "truth.parquet") as tmp:
        truth.to_parquet(tmp, index=False)
    sample_truth = pd.DataFrame(
        {
            "sample_id": cohort.sample_ids,
            "library_size": cohort.library_size,
            "dilution": cohort.dilution,
            "batch": samples["batch"],
        }
    )
    with atomic_output(out / "sample_truth.parquet") as tmp:
        sample_truth.to_parquet(tmp, index=False)
    config = _config(spec, out, modalities)
    with atomic_output(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    record = {
        "spec": asdict(spec),
        "n_samples": cohort.n_samples,
        "informative_features": informative,
        "effect_modifier": modifier_name,
        "n_visits_dropped_after_follow_up": int((~keep).sum()),
        "event_rate": float(outcomes["event"].mean()),
        "files": sorted(p.name for p in out.iterdir() if not p.name.startswith(".")),
    }
    write_json(out / "truth.json", record)
    return record
