"""One exception base for every problem a user can cause or meet, and its kinds.

The command line and the app turn a `ZipMapError` (or an `OSError`: a full disk, a permission) into
one line in the user's words. Anything else is a bug in ZipMap Studio: it shows its traceback with
a line saying so. Each kind also derives from the built-in it refines (ValueError, RuntimeError,
OSError), so callers that catch those keep working."""

from __future__ import annotations


class ZipMapError(Exception):
    """A problem the user can fix: the message names the file or option and says what is wrong."""


class InputError(ZipMapError, ValueError):
    """Inputs, options, settings or files that cannot be used as given."""


class SceneFileError(InputError):
    """A `.zipmap` scene file that is damaged, hostile, or from a newer version."""


class CheckpointError(ZipMapError, RuntimeError):
    """A checkpoint that cannot be loaded; the message says why and what to do."""


class DownloadError(ZipMapError, RuntimeError):
    """The official weights could not be fetched."""


class ModelOutputError(ZipMapError, ValueError):
    """The network produced numbers that cannot be used (NaN or infinity)."""


class OutputError(ZipMapError, OSError):
    """An output could not be written; the message names the file and the reason."""


class DistributedError(ZipMapError, RuntimeError):
    """A process of a split reconstruction failed or stopped answering."""


class PeerLostError(DistributedError):
    """This process of a split run lost its peers (one died or stopped answering): it ends with
    `PEER_LOST_EXIT`, so the launcher names the other one, not this."""


PEER_LOST_EXIT = 4  # the exit code of a process whose peers were lost (2: the user's error, 3: a bug)


# what the command line and the app report in one line; anything else is a bug
USER_ERRORS: tuple[type[BaseException], ...] = (ZipMapError, OSError)
