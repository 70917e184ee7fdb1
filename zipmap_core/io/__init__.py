"""Files in and out: photos and videos, their preprocessing, checkpoints, scene files, exports.
Everything here reads or writes a file; writes are atomic (`atomic.py`)."""
