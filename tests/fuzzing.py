"""Property-based tests of the parsers of untrusted input (issue 37): the profiles, the property
every parser must keep, and the strategies the `test_fuzz_*.py` files share.

The property: handed any bytes (a valid file mutated, or structures generated with odd types and
numbers), a parser returns a valid object or raises a `ZipMapError` naming the problem; never
another exception, never more memory than a bound above the input's size, never a file written.

Profiles (hypothesis settings, loaded when this module is imported):

- `ci` (the default): derandomised, so every run tries the same examples and a failure in CI is a
  failure on every machine; no example database is written; a bounded number of examples per
  test (each test asks for `examples(n)`), all the fuzz tests together in about 40 s on two busy
  CPU cores. Run: `python -m pytest -q -p no:cacheprovider tests/test_fuzz_*.py`.
- `release`: 20 times the examples, a random seed each run, for a release candidate (about
  11 minutes on two cores): `HYPOTHESIS_PROFILE=release python -m pytest -q -p no:cacheprovider
  tests/test_fuzz_*.py`. A failure prints the example and a `@reproduce_failure` blob; once the
  parser is fixed, keep the case as a plain test or an `@example(...)` beside the others ("what
  fuzzing found"), since the next release run draws other examples.

What counts as a user error here: a `ZipMapError` only. The command line and the app also report
an `OSError` in one line (a full disk, a permission), but every input of these tests is a readable
regular file in a private folder, so an `OSError` escaping a parser could only be a library's error
passed on without a message naming the file: counted as a failure. So is a `ZipMapError` that a
failed allocation caused (a `MemoryError` in its chain): the parser allocated what a file declared.

Memory: each parse runs with the address space capped (`RLIMIT_AS`) at what the process maps now
plus `HEADROOM` and a multiple of the input's size, so an allocation of a declared huge size fails
at once (and fails the test) whether or not its pages are ever touched; the peak resident size
(`ru_maxrss`) may grow by at most `RSS_GROWTH` plus twice the input's size as a second check.
What a reader imports or starts the first time (torch's modules, its thread pool) is done by each
file's fixtures before the examples, so that it is not counted against one.

`--hypothesis-show-statistics` shows, for each test, the share of examples accepted and of each
refusal (its message without the numbers and names): a strategy whose examples are all refused at
the first check tests little.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from zipmap_core.errors import ZipMapError

T = TypeVar("T")

# ---- profiles ------------------------------------------------------------------------------------------
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
SCALE = {"ci": 1, "release": 20}
# too_slow: an example builds a file and may load a model (tens of ms), by design;
# data_too_large / large_base_example: the mutated files are the point
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, suppress_health_check=SLOW_OK, print_blob=True)
settings.register_profile("release", derandomize=False, database=None, deadline=None, suppress_health_check=SLOW_OK, print_blob=True)
settings.load_profile(PROFILE if PROFILE in SCALE else "ci")


def examples(n: int) -> settings:
    """Settings for a test that tries `n` examples in the ci profile (20n in release)."""
    return settings(max_examples=n * SCALE.get(PROFILE, 1))


# ---- the property ----------------------------------------------------------------------------------------
HEADROOM = 768 << 20  # address space a parse may map beyond the input: thread arenas, a model on the meta device
RSS_GROWTH = 256 << 20  # resident memory a parse may add to the process's peak, beyond the input's size


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder`, with its size and modification time."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st_ = p.lstat()
            out[str(p.relative_to(folder))] = (st_.st_size, st_.st_mtime_ns)
    return out


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


@contextmanager
def memory_bound(input_bytes: int) -> Iterator[None]:
    """The address space capped for the block; its resident peak checked after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + HEADROOM + 8 * input_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown <= RSS_GROWTH + 2 * input_bytes, f"the peak resident memory grew by {grown >> 20} MB for a {input_bytes:,}-byte input"


def _allocation_failed(exc: BaseException) -> bool:
    """Whether a failed allocation is in `exc`'s chain (a MemoryError, or torch's wording of one)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).lower()
        if isinstance(e, MemoryError) or "cannot allocate memory" in text or "can't allocate memory" in text or "out of memory" in text:
            return True
        e = e.__cause__ or e.__context__
    return False


def _gist(message: str) -> str:
    """A message without its numbers, names and details: what `--hypothesis-show-statistics` counts."""
    gist = re.sub(r"\([^)]*\)|'[^']*'|\"[^\"]*\"|\[[^]]*\]|[-+]?\d[\d.,e+-]*", "_", message.splitlines()[0])
    return re.sub(r"\s+", " ", gist)[:60].strip()


def parse_checked(parse: Callable[[], T], inputs: Path, input_bytes: int = 0) -> T | None:
    """`parse()`'s result, or None when it raised a `ZipMapError`: any other exception fails the
    example, as do a memory bound passed and a file written (in `inputs`, or anywhere a temporary
    file would go: `tempfile` points into a scratch folder for the call)."""
    before = listing(inputs)
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-scratch-", dir=inputs.parent))
    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        result: T | None = None
        with memory_bound(input_bytes):
            try:
                result = parse()
                outcome = "accepted"
            except ZipMapError as exc:
                assert not _allocation_failed(exc), f"an allocation failed while reading (the parser trusted a declared size): {exc}"
                assert str(exc).strip() and "Traceback" not in str(exc), repr(exc)
                outcome = f"refused: {_gist(str(exc))}"
        if currently_in_test_context():  # what `--hypothesis-show-statistics` counts
            event(outcome)
        assert listing(inputs) == before, "the parser wrote into the folder it read from"
        left = list(scratch.iterdir())
        assert not left, f"the parser left temporary files: {left}"
    finally:
        tempfile.tempdir = saved
        for p in sorted(scratch.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        scratch.rmdir()
    return result


class Corpus(dict):
    """Valid files by name, the seeds of the mutations: shown by name in a failure report."""

    def __repr__(self) -> str:
        return f"<corpus {sorted(self)}>"


def fresh(folder: Path) -> Path:
    """`folder`, emptied (each example writes its input into a folder of its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(folder.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    return folder


# ---- values ----------------------------------------------------------------------------------------------
ODD_INTS = [0, -1, 1, 2, 3, 4, 14, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30, 10**400]
ODD_FLOATS = [0.0, -0.0, 1e-320, -1.0, 0.5, 1e9, 1e38, 3.5e38, 1e308, -1e308, math.inf, -math.inf, math.nan]

odd_ints = st.one_of(st.sampled_from(ODD_INTS), st.integers(-(2**70), 2**70), st.integers(-3, 20))
odd_floats = st.one_of(st.sampled_from(ODD_FLOATS), st.floats(allow_nan=True, allow_infinity=True))
odd_numbers = st.one_of(odd_ints, odd_floats)
odd_text = st.one_of(st.sampled_from(["", " ", "1", "nan", "inf", "-1", "1e999", "0x10", "\x00", "é" * 3]), st.text(max_size=12))
odd_scalars = st.one_of(st.none(), st.booleans(), odd_numbers, odd_text)
json_values = st.recursive(
    odd_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(odd_text, inner, max_size=5)),
    max_leaves=20,
)


def matrices(rows: int, cols: int) -> st.SearchStrategy[Any]:
    """Lists of lists of numbers near the shape asked for: one row or column more or less, a
    ragged row, odd numbers, or any JSON value in place of a number."""
    row_counts = st.sampled_from([rows, rows, rows, rows - 1, rows + 1, 0])
    number = st.one_of(st.floats(-2, 2), odd_numbers, json_values)
    return row_counts.flatmap(lambda r: st.lists(st.lists(number, min_size=cols - 1, max_size=cols + 1), min_size=r, max_size=r))


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def dumps(value: Any) -> bytes:
    """JSON as Python writes it, NaN and Infinity included; text that does not encode is written
    with its surrogates as they are (bytes that are not UTF-8)."""
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


# ---- mutations -------------------------------------------------------------------------------------------
ODD_WORDS = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]


@st.composite
def mutated(draw: st.DrawFn, data: bytes, hot: list[int] | tuple[int, ...] = ()) -> bytes:
    """`data` with 1 to 6 edits: bits flipped, bytes set, words overwritten with odd sizes, spans
    cut, repeated or inserted, or the end cut off. Edits land anywhere, or near the offsets in
    `hot` (where the structure is: headers, sizes, offsets), half the time."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        n = len(out)
        if n == 0:
            out += draw(st.binary(min_size=1, max_size=16))
            continue
        if hot and draw(st.booleans()):
            pos = min(n - 1, draw(st.sampled_from(list(hot))) + draw(st.integers(0, 48)))
        else:
            pos = draw(st.integers(0, n - 1))
        kind = draw(st.sampled_from(["flip", "byte", "word", "cut", "repeat", "insert", "truncate"]))
        if kind == "flip":
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            out[pos] = draw(st.integers(0, 255))
        elif kind == "word":
            size = draw(st.sampled_from([2, 4, 8]))
            word = draw(st.sampled_from(ODD_WORDS)) & ((1 << (8 * size)) - 1)
            out[pos : pos + size] = word.to_bytes(size, "little")
        elif kind == "cut":
            del out[pos : pos + draw(st.integers(1, 64))]
        elif kind == "repeat":
            span = bytes(out[pos : pos + draw(st.integers(1, 64))])
            out[pos:pos] = span * draw(st.integers(1, 4))
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        else:
            del out[pos:]
    return bytes(out)


def offsets_of(data: bytes, *needles: bytes) -> list[int]:
    """Where each needle occurs in `data` (the hot spots of `mutated`)."""
    found = []
    for needle in needles:
        start = data.find(needle)
        while start != -1 and len(found) < 256:
            found.append(start)
            start = data.find(needle, start + 1)
    return sorted(found)


def zip_hot_spots(data: bytes) -> list[int]:
    """A zip archive's headers: local, central, end records (zip64 too), and any .npy header in it."""
    return offsets_of(data, b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"\x93NUMPY")


def lie_about_sizes(data: bytes, sizes: dict[str, int], which: str = "both") -> bytes:
    """A zip archive whose central directory declares other sizes for some members (by name), as
    a hostile writer would: the uncompressed size, the compressed size or `both`, in the fixed
    fields and in any zip64 extra field; local headers left as they were."""
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", out, pos + 28)
        name = bytes(out[pos + 46 : pos + 46 + name_len]).decode("utf-8", "replace")
        if name in sizes:
            size = sizes[name] % 2**64
            fields = {"uncompressed": (1,), "compressed": (0,), "both": (0, 1)}[which]  # 0: compressed, 1: uncompressed
            packed = struct.unpack_from("<II", out, pos + 20)
            extra_at, i = pos + 46 + name_len, pos + 46 + name_len
            while i + 4 <= extra_at + extra_len:
                tag, length = struct.unpack_from("<HH", out, i)
                if tag == 1:  # zip64: the sizes the fixed fields left at 0xFFFFFFFF, uncompressed first, 8 bytes each
                    slots = [k for k in (1, 0) if packed[k] == 0xFFFFFFFF][: length // 8]
                    for n, k in enumerate(slots):
                        if k in fields:
                            struct.pack_into("<Q", out, i + 4 + 8 * n, size)
                i += 4 + length
            for k in fields:
                if packed[k] != 0xFFFFFFFF:
                    struct.pack_into("<I", out, pos + 20 + 4 * k, min(size, 0xFFFFFFFF))
        pos = out.find(b"PK\x01\x02", pos + 46 + name_len + extra_len + comment_len)
    return bytes(out)
