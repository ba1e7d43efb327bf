"""model.device: CPU, or a CUDA GPU that must be there (no silent fallback to the CPU)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omics_ml import device as device_module
from omics_ml.device import DeviceError, resolve_device
from omics_ml.pipeline import fit_pipeline


def test_cpu_is_the_default() -> None:
    assert resolve_device(None) == "cpu"
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("value", ["gpu", "cpu:0", "cuda0", "tpu"])
def test_unknown_devices_name_the_config_key(value: str) -> None:
    with pytest.raises(ValueError, match=r"model\.device.*unknown device"):
        resolve_device(value)


def test_cuda_fails_clearly_where_xgboost_would_fall_back_to_the_cpu() -> None:
    """XGBoost itself only warns and trains on the CPU; the run must stop instead."""
    if device_module._cuda_device_in_use() != "cpu":
        assert resolve_device("cuda") == "cuda"
        assert resolve_device("cuda:0") == "cuda:0"
        pytest.skip("a GPU is present: cuda resolves; the no-GPU error cannot be shown here")
    with pytest.raises(DeviceError, match=r"model\.device is 'cuda'.*no usable GPU.*cpu"):
        resolve_device("cuda")


def test_a_pipeline_asked_for_cuda_stops_before_training_without_a_gpu() -> None:
    if device_module._cuda_device_in_use() != "cpu":
        pytest.skip("a GPU is present")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 5)), columns=[f"m:f{j}" for j in range(5)])
    outcomes = pd.DataFrame(
        {"subject_id": [f"p{i}" for i in range(40)], "label": np.repeat(["a", "b"], 20)}
    )
    config = {
        "task": "classification",
        "modalities": {"m": {"type": "other", "normalisation": []}},
        "model": {"device": "cuda", "n_estimators": 5},
    }
    with pytest.raises(DeviceError, match="no usable GPU"):
        fit_pipeline(frame, outcomes, config=config, classes=["a", "b"])
