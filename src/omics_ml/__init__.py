"""omics-ml: leakage-proof multi-omics XGBoost pipelines tracked and served with MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("omics-ml")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
