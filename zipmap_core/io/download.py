"""Optional download of the authors' checkpoints through huggingface_hub (into its cache)."""

from __future__ import annotations

from pathlib import Path

from ..model.config import OFFICIAL_FILES

REPO_ID = "coast01/ZipMap"


class DownloadError(RuntimeError):
    """The checkpoint could not be fetched; the message says why and what to do instead."""


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
