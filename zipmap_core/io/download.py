"""Optional download of the authors' checkpoints through huggingface_hub (into its cache)."""

from __future__ import annotations

import time
from pathlib import Path

from ..cancel import Cancelled, Progress
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
    offline = DownloadError(
        f"cannot download {filename} from the Hugging Face repository {REPO_ID}: this computer appears to be "
        f"offline (or HF_HUB_OFFLINE is set). Download it on a connected machine and open it with "
        f"'Load checkpoint…' / --checkpoint instead."
    )
    try:  # a copy already in the cache needs no network
        return Path(hf_hub_download(REPO_ID, filename, cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if not hub_reachable():
        raise offline  # at once, not after the hub client's retries (half a minute)
    try:
        path = hf_hub_download(REPO_ID, filename, cache_dir=cache_dir, tqdm_class=tqdm_class)
    except LocalEntryNotFoundError as exc:
        raise offline from exc
    except Cancelled:
        raise
    except Exception as exc:  # network, HTTP and disk errors from the hub client
        raise DownloadError(f"cannot download {filename} from {REPO_ID}: {exc}") from exc
    return Path(path)


def cached_official(cache_dir: str | Path | None = None) -> str | None:
    """The `official:VARIANT` spec of an official checkpoint already on this machine (the
    state-query one first: it also renders novel views), or None; never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    for variant in sorted(OFFICIAL_FILES, key=lambda v: v != DEFAULT_OFFICIAL):
        found = try_to_load_from_cache(REPO_ID, OFFICIAL_FILES[variant], cache_dir=cache_dir)
        if isinstance(found, str) and Path(found).is_file():
            return f"{OFFICIAL_PREFIX}:{variant}"
    return None


def cached_official_path(cache_dir: str | Path | None = None) -> Path | None:
    """The file of `cached_official`'s checkpoint (resolved), or None."""
    spec = cached_official(cache_dir)
    if spec is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(REPO_ID, OFFICIAL_FILES[spec.partition(":")[2]], cache_dir=cache_dir)
    return Path(found).resolve() if isinstance(found, str) else None


def progress_tqdm(progress: Progress) -> type:
    """A tqdm class for the hub client that reports a download to `progress` as
    ("download 1.2 of 5.5 GB, 35 MB/s", MB done, MB in all): a progress callback that checks a
    cancel token stops the download where it is (the hub client resumes it next time)."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs["disable"] = True  # no terminal output: the callback is the display
            super().__init__(*args, **kwargs)
            self._started, self._done = time.monotonic(), 0.0  # a disabled tqdm counts nothing itself

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self._done += n or 0
            total, done = self.total or 0, self._done
            rate = done / max(time.monotonic() - self._started, 1e-3)
            text = f"download {done / 1e9:.2f} of {total / 1e9:.2f} GB, {rate / 1e6:.0f} MB/s"
            progress(text, int(done // 2**20), int(total // 2**20))
            return shown

    return Reporting


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection (False offline, or with HF_HUB_OFFLINE)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


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
