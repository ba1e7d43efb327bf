"""What a tracked run records about where it came from: config, code, data, versions, keys.

Everything here is pure (no MLflow store is touched): :mod:`omics_ml.tracking` turns the
results into run parameters and tags, :mod:`omics_ml.registry` into model-version tags.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import platform
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_PARAM_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "PseudonymKey",
    "config_hash",
    "data_digests",
    "flatten_config",
    "git_state",
    "package_versions",
    "pseudonym_key",
    "pseudonymise",
]

logger = logging.getLogger(__name__)

#: MLflow's limits on a parameter (``mlflow.utils.validation``); longer values are cut and
#: marked, and the whole config is logged as an artifact next to them.
MAX_PARAM_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
TRUNCATED = "...[truncated: see config/config.json]"
#: Packages whose versions are tagged on every run (``version.<name>``).
TRACKED_PACKAGES = ("omics-ml", "xgboost", "snakemake", "mlflow", "numpy", "polars", "anndata")


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested config into ``a.b.c`` keys with string values (MLflow params).

    Lists and scalars are JSON with sorted keys (strings stay as they are), so the same config
    written with its keys in another order logs the same values. A value longer than MLflow's limit
    (:data:`MAX_PARAM_VALUE_LENGTH`) is cut and ends with a marker pointing to the full config
    artifact; a key longer than :data:`MAX_PARAM_KEY_LENGTH` is cut and keeps a hash of the
    full key, so two long keys stay distinct.

    Parameters
    ----------
    config : mapping
        The validated config.
    prefix : str, optional
        Prepended to every key.

    Returns
    -------
    dict of str to str
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - len(TRUNCATED)] + TRUNCATED
        if len(name) > MAX_PARAM_KEY_LENGTH:
            digest = hashlib.sha256(name.encode()).hexdigest()[:12]
            name = f"{name[: MAX_PARAM_KEY_LENGTH - 13]}~{digest}"
        flat[name] = text
    return flat


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config in canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def data_digests(config: Mapping[str, Any], file_digests: Mapping[str, str]) -> dict[str, str]:
    """SHA-256 of every input file, keyed by its role in the config.

    Roles (``cohort.samples``, ``cohort.outcomes``, ``modality.<name>``) stay the same when
    files move, so runs on different copies of the same data compare equal.

    Parameters
    ----------
    config : mapping
        The validated config.
    file_digests : mapping
        Path (as written in the config) to SHA-256, as in the QC summary's ``files``.

    Returns
    -------
    dict of str to str
        Role to digest; ``"unknown"`` for a file the QC summary did not hash.
    """
    roles = {f"cohort.{k}": config["cohort"][k] for k in ("samples", "outcomes")}
    roles.update({f"modality.{m}": s["path"] for m, s in config["modalities"].items()})
    return {role: file_digests.get(str(path), "unknown") for role, path in roles.items()}


def git_state(directory: str | os.PathLike[str]) -> dict[str, str]:
    """Commit of the source tree and whether it has uncommitted changes.

    Returns
    -------
    dict
        ``commit`` (40 hex characters, or ``"unknown"`` outside a git checkout) and ``dirty``
        (``"true"``, ``"false"`` or ``"unknown"``).
    """

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args],
                cwd=directory,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": "unknown", "dirty": "unknown"}
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = "unknown" if status is None else str(bool(status.strip())).lower()
    return {"commit": commit.strip(), "dirty": dirty}


def package_versions(packages: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"not installed"`` if absent) and of Python."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name.replace("-", "_")] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name.replace("-", "_")] = "not installed"
    return versions


class PseudonymKey:
    """The secret key of the keyed hash that replaces subject ids before they leave the machine.

    The key itself is never logged; :attr:`key_id` (a hash of it) is, so a reviewer can tell
    whether two runs used the same key and their pseudonyms can be joined.

    Parameters
    ----------
    key : bytes
        The secret.
    source : str
        Where it came from (an environment variable's name or a key file), for the record.
    """

    def __init__(self, key: bytes, source: str) -> None:
        if not key:
            msg = (
                f"the pseudonymisation key from {source} is empty; set it to a long random secret."
            )
            raise ValueError(msg)
        self._key = key
        self.source = source

    @property
    def key_id(self) -> str:
        """First 12 hex characters of a SHA-256 of the key, safe to log."""
        return hashlib.sha256(b"omics-ml pseudonym key id\0" + self._key).hexdigest()[:12]

    def pseudonymise(self, ids: Sequence[Any]) -> list[str]:
        """Keyed hash of each identifier (see :func:`pseudonymise`)."""
        return pseudonymise(ids, self._key)

    def __repr__(self) -> str:
        return f"PseudonymKey(key_id={self.key_id!r}, source={self.source!r})"


def pseudonym_key(env_var: str, key_file: str | os.PathLike[str]) -> PseudonymKey:
    """The pseudonymisation key: ``$env_var``, or else a random key kept in ``key_file``.

    Set the environment variable to share one key across runs and machines (pseudonyms then
    join); without it, a 256-bit key is created once in ``key_file`` (mode 0600) beside the
    local store, and a warning says so.
    """
    value = os.environ.get(env_var)
    if value:
        return PseudonymKey(value.encode(), f"${env_var}")
    path = Path(key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked: a run started at the same time
        # reads either no file or the complete key, never a half-written one.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        logger.warning(
            "$%s is not set: subject ids are pseudonymised with a random key kept in %s",
            env_var,
            path,
        )
    return PseudonymKey(path.read_text().strip().encode(), f"key file {path.name}")


def pseudonymise(ids: Sequence[Any], key: bytes) -> list[str]:
    """Keyed hash (HMAC-SHA256, first 16 hex characters) of each identifier."""
    return [hmac.new(key, str(i).encode(), hashlib.sha256).hexdigest()[:16] for i in ids]
