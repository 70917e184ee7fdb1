"""Optional download of the authors' checkpoints through huggingface_hub (into its cache)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DownloadError
from ..model.config import OFFICIAL_FILES
from ..resources import BUNDLED_MODEL

REPO_ID = "coast01/ZipMap"
OFFICIAL_PREFIX = "official"
DEFAULT_OFFICIAL = "state_query"  # the variant that also renders novel views from the scene state


def download_official(variant: str, cache_dir: str | Path | None = None, tqdm_class=None) -> Path:
    """Returns the local path of an official checkpoint, downloading it if it is not cached."""
    if variant not in OFFICIAL_FILES:
        raise DownloadError(f"unknown variant {variant!r}; choose one of {sorted(OFFICIAL_FILES)}")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DownloadError("huggingface_hub is not installed") from exc
    filename = OFFICIAL_FILES[variant]
    try:
        path = hf_hub_download(REPO_ID, filename, cache_dir=cache_dir, tqdm_class=tqdm_class)
    except LocalEntryNotFoundError as exc:
        raise DownloadError(
            f"cannot download {filename} from the Hugging Face repository {REPO_ID}: this computer appears to be "
            f"offline (or HF_HUB_OFFLINE is set). Download it on a connected machine and open it with "
            f"'Load checkpoint…' / --checkpoint instead."
        ) from exc
    except Exception as exc:  # network, HTTP and disk errors from the hub client
        raise DownloadError(f"cannot download {filename} from {REPO_ID}: {exc}") from exc
    return Path(path)


def resolve_checkpoint(spec: str | Path | None, tqdm_class=None) -> Path:
    """Where a checkpoint named by the user lives: nothing -> the bundled model; `official` or
    `official:VARIANT` -> the authors' checkpoint, downloaded once into the Hugging Face cache
    (one step from the demonstration model to real photos); anything else is a path."""
    if spec is None or str(spec) == "":
        return BUNDLED_MODEL
    text = str(spec)
    if text == OFFICIAL_PREFIX or text.startswith(OFFICIAL_PREFIX + ":"):
        variant = text.partition(":")[2] or DEFAULT_OFFICIAL
        return download_official(variant, tqdm_class=tqdm_class)
    return Path(spec)
