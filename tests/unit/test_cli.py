"""The omics-ml command line, run as a real subprocess and in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from omics_ml.cli import main, run_summary

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
    assert "150 samples" in capsys.readouterr().out
    assert (tmp_path / "qc.json").exists()


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
