"""The omics-ml command line, run as a real subprocess and in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from omics_ml.cli import build_parser, main, run_summary

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_commands() -> None:
    exe = Path(sys.executable).parent / "omics-ml"
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    for command in ("predict", "validate", "summary"):
        assert command in result.stdout


def test_validate_command_on_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(REPO)
    assert (
        main(["validate", "--config", "config/config.yaml", "--qc-out", str(tmp_path / "qc.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "150 samples" in out
    assert "modalities mrna, mirna, protein, rnaseq" in out
    assert (tmp_path / "qc.json").exists()


def test_validate_command_reports_bad_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(REPO)
    lines = (REPO / "resources/example/rnaseq.tsv").read_text().splitlines()
    fields = lines[2].split("\t")
    fields[3] = "-4"
    lines[2] = "\t".join(fields)
    (tmp_path / "counts.tsv").write_text("\n".join(lines) + "\n")
    config = (REPO / "config/config.yaml").read_text()
    config = config.replace("resources/example/rnaseq.tsv", str(tmp_path / "counts.tsv"))
    (tmp_path / "config.yaml").write_text(config)
    assert main(["validate", "--config", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    sample = lines[0].split("\t")[3]
    assert "counts.tsv" in err and "negative count" in err
    assert f"sample {sample!r}" in err and f"feature {fields[0]!r}" in err


def test_predict_accepts_a_samples_sheet() -> None:
    args = build_parser().parse_args(
        ["predict", "--model", "models:/m@champion", "--input", "d", "--samples", "s.csv"]
    )
    assert args.samples == "s.csv"
    assert args.input == ["d"]
    assert build_parser().parse_args(["predict", "--model", "m", "--input", "d"]).samples is None


def test_validate_command_reports_input_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text(
        f"cohort: {{samples: {tmp_path / 'missing.csv'}, outcomes: x.csv, outcome_column: y}}\nmodalities: {{}}\n"
    )
    assert main(["validate", "--config", str(bad)]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_predict_rejects_unknown_input(tmp_path: Path, capsys) -> None:
    from omics_ml.io import InputError
    from omics_ml.predict import find_input_files

    with pytest.raises(InputError, match="no modality 'rna'"):
        find_input_files([f"rna={tmp_path / 'x.csv'}"], ["mrna", "mirna"])


def test_run_summary_without_results(tmp_path: Path) -> None:
    assert "no registered model" in run_summary(str(tmp_path))


def test_run_summary_states_the_what_if_results(tmp_path: Path) -> None:
    from omics_ml.io import write_json

    write_json(
        tmp_path / "register/model.json",
        {
            "model_uri": "models:/m/1",
            "promoted": True,
            "promotion_reason": "first version",
            "ui_command": "mlflow ui",
            "ui_runs_page": "http://127.0.0.1:5000",
            "champion_uri": "models:/m@champion",
            "tracking_uri": "sqlite:///x.db",
        },
    )
    interval = {"estimate": 0.05, "lower": -0.01, "upper": 0.11}
    write_json(
        tmp_path / "evaluate/twin.json",
        {
            "treatment": {"arms": ["placebo", "drug"]},
            "outcome_scale": {"label": "risk of the event by 3"},
            "trial_contrast": {"benefit": interval},
            "learners": {
                "t": {"metrics": {"average_benefit": interval, "c_for_benefit": interval}}
            },
            "heterogeneity_statement": "The evidence for heterogeneity is weak: details",
            "warnings": ["check the overlap"],
        },
    )
    text = run_summary(str(tmp_path))
    assert "What-if, drug vs placebo" in text
    assert "T-learner average +0.050 [-0.010, +0.110]" in text
    assert "The evidence for heterogeneity is weak." in text
    assert "warning: check the overlap" in text
    assert "--what-if" in text
