"""`omics-ml models`: registered versions read from a real MLflow SQLite store."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from omics_ml.cli import main
from omics_ml.model_versions import COLUMNS, format_versions, versions_table

CLASSIFIER = "omics_classifier"
SURVIVAL = "omics_survival"
HASH = "0123456789abcdef" * 4


class _Constant(mlflow.pyfunc.PythonModel):
    """A tiny real model: predicts 0 for every row."""

    def predict(self, context: Any, model_input: list[str], params: Any = None) -> list[int]:
        return [0] * len(model_input)


def _pipeline_tags(
    task: str, metric: str, *, holdout: float, cv: float, decision: str, parent: str
) -> dict[str, str]:
    """Model-version tags as the pipeline writes them."""
    return {
        f"holdout_{metric}": f"{holdout:.6f}",
        f"cv_{metric}": f"{cv:.6f}",
        "holdout_other_metric": "0.100000",
        "promotion.decision": decision,
        "promotion.metric": metric,
        "promotion.rule": "better_than_champion",
        "promotion.margin": "0",
        "promotion.new_value": f"{holdout:.6f}",
        "promotion.champion_value": "none",
        "promotion.champion_version": "none",
        "promotion.reason": "test",
        "config_hash": HASH,
        "lineage.run_id": parent,
        "git.commit": "abc1234",
        "task": task,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A SQLite store: 3 classifier versions (the last untagged) and 1 survival version."""
    tmp = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp}/mlflow.db"
    previous = (tracking_utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI"))
    mlflow.set_tracking_uri(uri)  # also sets $MLFLOW_TRACKING_URI
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.create_experiment(
            "models-test", artifact_location=(tmp / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment, run_name="parent") as parent:
            pass
        parent_id = parent.info.run_id

        def register(name: str, tags: dict[str, str] | None) -> tuple[str, str]:
            with mlflow.start_run(experiment_id=experiment) as run:
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=_Constant(), pip_requirements=["mlflow"]
                )
            if name not in {m.name for m in client.search_registered_models()}:
                client.create_registered_model(name)
            version = client.create_model_version(
                name, source=info.model_uri, run_id=run.info.run_id, tags=tags
            )
            return version.version, run.info.run_id

        register(
            CLASSIFIER,
            _pipeline_tags(
                "classification",
                "balanced_accuracy",
                holdout=0.8123456,
                cv=0.75,
                decision="promoted",
                parent=parent_id,
            ),
        )
        v2, _ = register(
            CLASSIFIER,
            _pipeline_tags(
                "classification",
                "balanced_accuracy",
                holdout=0.7,
                cv=0.71,
                decision="not promoted",
                parent=parent_id,
            ),
        )
        v3, untagged_run = register(CLASSIFIER, None)
        register(
            SURVIVAL,
            _pipeline_tags(
                "survival",
                "c_index_harrell",
                holdout=0.66,
                cv=0.64,
                decision="promoted",
                parent=parent_id,
            ),
        )
        client.set_registered_model_alias(CLASSIFIER, "champion", "1")
        client.set_registered_model_alias(CLASSIFIER, "stable", "1")
        client.set_registered_model_alias(CLASSIFIER, "challenger", v2)
        client.set_registered_model_alias(SURVIVAL, "champion", "1")
        yield {"uri": uri, "parent": parent_id, "untagged_run": untagged_run, "v3": v3}
    finally:
        mlflow.set_tracking_uri(previous[0])
        if previous[1] is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous[1]


def test_all_models_rows_order_and_values(store: dict[str, Any]) -> None:
    table = versions_table(store["uri"])
    assert tuple(table.columns) == COLUMNS
    assert list(zip(table["model"], table["version"], strict=True)) == [
        (CLASSIFIER, 3),
        (CLASSIFIER, 2),
        (CLASSIFIER, 1),
        (SURVIVAL, 1),
    ]
    assert table["aliases"].tolist() == ["", "challenger", "champion,stable", "champion"]
    first = table.iloc[2]
    assert first["task"] == "classification"
    assert first["metric"] == "balanced_accuracy"
    assert first["holdout"] == pytest.approx(0.812346)
    assert first["cv"] == pytest.approx(0.75)
    assert first["decision"] == "promoted"
    assert first["config"] == HASH[:8]
    assert first["run"] == store["parent"][:8]
    assert first["status"] == "READY"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", first["created"])
    assert table.iloc[1]["decision"] == "not promoted"
    survival = table.iloc[3]
    assert survival["metric"] == "c_index_harrell"
    assert survival["holdout"] == pytest.approx(0.66)
    assert survival["cv"] == pytest.approx(0.64)


def test_untagged_version_has_empty_fields(store: dict[str, Any]) -> None:
    row = versions_table(store["uri"], CLASSIFIER).iloc[0]
    assert row["version"] == int(store["v3"])
    assert math.isnan(row["holdout"]) and math.isnan(row["cv"])
    assert row["task"] == row["metric"] == row["decision"] == row["config"] == ""
    assert row["run"] == store["untagged_run"][:8]


def test_one_model_and_every_page_read(store: dict[str, Any]) -> None:
    table = versions_table(store["uri"], CLASSIFIER, page_size=1)
    assert table["model"].unique().tolist() == [CLASSIFIER]
    assert table["version"].tolist() == [3, 2, 1]
    assert len(versions_table(store["uri"], page_size=1)) == 4


def test_unknown_model_names_the_existing_ones(store: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no registered model 'nope'") as err:
        versions_table(store["uri"], "nope")
    assert CLASSIFIER in str(err.value) and SURVIVAL in str(err.value)


def test_missing_sqlite_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no MLflow store"):
        versions_table(f"sqlite:///{tmp_path}/absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_format_versions(store: dict[str, Any]) -> None:
    text = format_versions(versions_table(store["uri"]))
    lines = text.splitlines()
    assert lines[0].split() == list(COLUMNS)
    assert len(lines) == 5
    assert "champion,stable" in text and "challenger" in text
    assert "0.812" in text and "0.750" in text and "0.660" in text
    untagged = lines[1].split()
    assert untagged[:2] == [CLASSIFIER, "3"] and untagged.count("-") >= 6
    empty = format_versions(versions_table(store["uri"]).iloc[:0], tracking_uri="sqlite:///x.db")
    assert empty == "no registered model versions in sqlite:///x.db"


def test_cli_lists_versions(store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--tracking-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    assert CLASSIFIER in out and SURVIVAL in out and "champion,stable" in out
    assert "0.812" in out
    assert main(["models", "--tracking-uri", store["uri"], "--name", SURVIVAL]) == 0
    assert CLASSIFIER not in capsys.readouterr().out


def test_cli_unknown_model_exits_2(
    store: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--tracking-uri", store["uri"], "--name", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "omics-ml: error: no registered model 'nope'" in captured.err
    assert CLASSIFIER in captured.err


def test_cli_default_uri_is_the_results_store(
    store: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)  # as in a fresh process
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    db = Path(store["uri"].removeprefix("sqlite:///"))
    (tmp_path / "results" / "mlflow").mkdir(parents=True)
    (tmp_path / "results" / "mlflow" / "mlflow.db").symlink_to(db)
    assert main(["models"]) == 0
    assert CLASSIFIER in capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    monkeypatch.chdir(tmp_path / "results")
    assert main(["models", "--name", SURVIVAL]) == 0
    assert SURVIVAL in capsys.readouterr().out
