"""The documentation keeps to the code (README.md and docs/*.md):

- every `zipmap ...` and `zipmap-studio ...` command line they show (```bash blocks, and inline
  `code` starting with the program) names a command, benchmark and options that the command's
  `--help` has, with values among an option's choices where it has them;
- the options tables of docs/cli.md and docs/app.md name only real options, and every option of
  every command is named there (and every benchmark in docs/benchmarks.md);
- docs/development.md's architecture names every subpackage and module it must;
- every relative link points to a file that exists (and to a heading, where it names one);
- the README stays within 200 lines.

The parsers are built in-process (`zipmap_core.cli.build_parser`, `app.__main__.build_parser`),
never spawned; `test_the_checks_catch_mistakes` shows that made-up names are caught."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
PAGES = ["app", "cli", "formats", "colmap_and_dense", "benchmarks", "scaling_out", "development"]
README_MAX_LINES = 200

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PROGRAMS = ("zipmap", "zipmap-studio")
OPTION = re.compile(r"^(--?[A-Za-z][\w-]*)(=.*)?$")
WORD = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")  # a literal value; placeholders are in capitals (INPUT, DIR)


@dataclass(frozen=True)
class Shown:
    """One command line as a page shows it."""

    page: str
    text: str
    tokens: tuple[str, ...]  # from the program name on
    literal: bool  # a ```bash line (a real command), not an inline synopsis with placeholders


# ---- the parsers --------------------------------------------------------------------------------------
def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    """'zipmap', 'zipmap <command>' and 'zipmap-studio' -> their parser."""
    from app.__main__ import build_parser as studio_parser
    from zipmap_core.cli import build_parser

    zipmap = build_parser()
    out = {"zipmap": zipmap, "zipmap-studio": studio_parser()}
    out.update({f"zipmap {name}": sub for name, sub in _subcommands(zipmap).items()})
    return out


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)


def _positional_choices(parser: argparse.ArgumentParser) -> list[str]:
    """The choices of the first positional argument that has them (`zipmap bench WHICH`)."""
    for action in parser._actions:
        if not action.option_strings and action.choices and not isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


# ---- what the pages show ------------------------------------------------------------------------------
def _logical_lines(block: str) -> list[str]:
    """A shell block's commands: continuations joined, comments and prompts dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        line = re.sub(r"^\$\s+", "", line)
        if line:
            lines += [part.strip() for part in re.split(r"\s*(?:&&|\|\||;|(?<!\\)\|)\s*", line) if part.strip()]
    return lines


def _from_program(tokens: list[str]) -> list[str] | None:
    """The tokens from the program name on (after `env`, `xvfb-run`, `VAR=value` and the like;
    `python -m zipmap_core.cli` counts as `zipmap`), or None when no command of ours is run."""
    for i, token in enumerate(tokens):
        if token in PROGRAMS:
            return tokens[i:]
        if token == "zipmap_core.cli" and i and tokens[i - 1] == "-m":
            return ["zipmap", *tokens[i + 1 :]]
    return None


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def shown_commands(page: str, text: str) -> list[Shown]:
    """Every command line of ours `text` shows: the lines of its ```bash (or ```sh, ```shell)
    blocks, and inline code spans starting with `zipmap` or `zipmap-studio`."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang in ("bash", "sh", "shell", "console"):
            for line in _logical_lines(body):
                tokens = _from_program(_split(line))
                if tokens:
                    found.append(Shown(page, line, tuple(tokens), True))
    prose = FENCE.sub("", text)
    for span in INLINE.findall(prose):
        span = span.replace("\\|", "|").strip()
        first = span.split(maxsplit=1)[0] if span else ""
        if first in PROGRAMS:
            for part in re.split(r"\s+/\s+", span):  # `zipmap convert ... / zipmap info FILE`
                tokens = _from_program(part.split())
                if tokens:
                    found.append(Shown(page, part, tuple(tokens), False))
    return found


def _values(token: str) -> list[str]:
    """The literal alternatives a shown value names (`state|photos`, `[--x ply]`), or [] for a
    placeholder, a path or an expression."""
    token = token.strip("[](){}")
    parts = [p.strip("[](){}") for p in token.split("|")]
    return parts if parts and all(WORD.match(p) for p in parts) else []


def problems(shown: Shown) -> list[str]:
    """What in `shown` its parser does not know: the command, an option, or a value outside an
    option's choices."""
    tokens = list(shown.tokens)
    program = tokens.pop(0)
    known = parsers()
    key = program
    where = f"{shown.page}: `{shown.text}`"
    if program == "zipmap":
        if not tokens or tokens[0].startswith("-") or tokens[0] in ("...", "…"):
            return []
        command = tokens.pop(0).strip("[]")
        alternatives = command.split("|")
        bad = [c for c in alternatives if f"zipmap {c}" not in known]
        if bad:
            return [f"{where}: no command `zipmap {'|'.join(bad)}`"]
        if len(alternatives) > 1:
            return []  # `zipmap a|b` names commands, not one command's options
        key = f"zipmap {command}"
    parser = known[key]
    options = _options(parser)
    found = []
    positional = _positional_choices(parser) if key == "zipmap bench" else []
    if positional:
        word = next((t for t in tokens if not t.startswith("-")), None)
        for value in _values(word or ""):
            if value not in positional:
                found.append(f"{where}: `zipmap bench` has no benchmark `{value}` (it has {', '.join(positional)})")
    for i, token in enumerate(tokens):
        for piece in token.strip("[](){}").split("|"):
            match = OPTION.match(piece)
            if not match:
                continue
            name = match.group(1)
            if name not in options:
                found.append(f"{where}: `{key} --help` has no option {name}")
                continue
            action = options[name]
            if action.choices:
                value = match.group(2)[1:] if match.group(2) else (tokens[i + 1] if i + 1 < len(tokens) else "")
                for v in _values(value):
                    if v not in [str(c) for c in action.choices]:
                        found.append(f"{where}: {name} takes {', '.join(map(str, action.choices))}, not `{v}`")
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def _anchors(text: str) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.M)}


def broken_links(page: str, text: str, where: Path) -> list[str]:
    """Relative links of `text` (the page `page`, a file at `where`) that point to no file, or to
    no heading."""
    found = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (where.parent / path_part).resolve() if path_part else where
        if not path.exists():
            found.append(f"{page}: link to {target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text() if path_part else text):
            found.append(f"{page}: link to {target}: no such heading")
    return found


def sections(text: str) -> dict[str, str]:
    """A page's `## ` sections: heading -> body."""
    parts = re.split(r"^## +(.+?)\s*$", FENCE.sub("", text), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def section_parsers(page: str, heading: str) -> list[str]:
    """The parsers an options table under `heading` documents: `zipmap X` for a heading naming
    commands (`zipmap download, convert, info`), `zipmap-studio` for the app's options."""
    if page == "docs/app.md" and heading == "Options":
        return ["zipmap-studio"]
    words = re.findall(r"[a-z][a-z-]*", heading.replace("`", ""))
    if page != "docs/cli.md" or not words or words[0] != "zipmap":
        return []
    return [f"zipmap {w}" for w in words[1:] if f"zipmap {w}" in parsers()]


def table_options(page: str, text: str) -> list[tuple[str, str, list[str]]]:
    """(the table cell, the option with any value shown, the parsers it belongs to) for each
    option in the first column of the options tables of `docs/cli.md` and the app's options."""
    found = []
    for heading, body in sections(text).items():
        keys = section_parsers(page, heading)
        if not keys:
            continue
        for row in re.findall(r"^\|((?:\\\||[^|\n])*)\|", body, re.M):
            for span in INLINE.findall(row):
                span = span.replace("\\|", "|")
                if span.startswith("-"):
                    found.append((row.strip(), span, keys))
    return found


def table_problems(page: str, text: str) -> list[str]:
    """Options in those tables that none of their parsers has, or values outside its choices."""
    found = []
    for row, span, keys in table_options(page, text):
        tokens = span.split()
        name = tokens[0]
        actions = [_options(parsers()[k])[name] for k in keys if name in _options(parsers()[k])]
        if not actions:
            found.append(f"{page}: `{span}` (in `{row}`): no such option of {' or '.join(keys)}")
            continue
        choices = {str(c) for a in actions for c in (a.choices or [])}
        if choices and len(tokens) > 1:
            found += [
                f"{page}: `{span}`: {name} takes {', '.join(sorted(choices))}, not {v}" for v in _values(tokens[1]) if v not in choices
            ]
    return found


# ---- the tests ----------------------------------------------------------------------------------------
def _pages() -> dict[str, str]:
    return {page: (ROOT / page).read_text() for page in DOCS}


def test_every_page_exists():
    missing = [p for p in PAGES if not (ROOT / "docs" / f"{p}.md").is_file()]
    assert not missing, f"docs pages missing: {missing}"


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it to {README_MAX_LINES} and move detail to docs/"


def test_the_readme_says_the_bundled_model_is_a_demonstration_before_the_commands():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("demonstration model") < readme.index("bash scripts/run-sample.sh")
    assert "--checkpoint official" in readme


def test_shown_commands_match_their_help():
    shown = [s for page, text in _pages().items() for s in shown_commands(page, text)]
    assert len(shown) >= 40, f"only {len(shown)} command lines found: is the collector still reading the pages?"
    assert sum(s.literal for s in shown) >= 15, "few ```bash command lines found"
    bad = [p for s in shown for p in problems(s)]
    assert not bad, "the docs show what --help does not have:\n" + "\n".join(bad)


def test_option_tables_match_their_help():
    """The options tables of docs/cli.md and docs/app.md name options their command has."""
    rows = {page: table_options(page, text) for page, text in _pages().items()}
    assert len(rows["docs/cli.md"]) >= 60 and len(rows["docs/app.md"]) >= 10, "the options tables were not found"
    bad = [p for page, text in _pages().items() for p in table_problems(page, text)]
    assert not bad, "\n".join(bad)


def test_every_command_and_option_is_documented():
    """docs/cli.md has a section for every `zipmap` command naming each of its options, docs/app.md
    names every `zipmap-studio` option, and docs/benchmarks.md every benchmark."""
    pages = _pages()
    shown: dict[str, str] = {}
    for page in ("docs/cli.md", "docs/app.md"):
        for heading, body in sections(pages[page]).items():
            for key in section_parsers(page, heading):
                shown[key] = shown.get(key, "") + body
    missing = []
    for key, parser in parsers().items():
        if key == "zipmap":
            continue
        if key not in shown:
            missing.append(f"{key}: no section")
            continue
        names = {o for o in _options(parser) if o.startswith("--") and o != "--help"}
        missing += [f"{key} {o}" for o in sorted(names) if not re.search(rf"`{re.escape(o)}(?![\w-])", shown[key])]
    benches = _positional_choices(parsers()["zipmap bench"])
    missing += [f"zipmap bench {b}" for b in benches if f"zipmap bench {b}" not in pages["docs/benchmarks.md"]]
    assert not missing, f"not documented: {missing}"


def test_architecture_names_every_part():
    """docs/development.md's picture names every subpackage and top-level module of the engine,
    and every module of the app (the README's old map had left out sfm/ and engines.py)."""
    text = (ROOT / "docs" / "development.md").read_text()
    engine = ROOT / "zipmap_core"
    parts = [f"{p.name}/" for p in sorted(engine.iterdir()) if (p / "__init__.py").is_file()]
    parts += [p.name for p in sorted(engine.glob("*.py")) if p.name != "__init__.py"]
    parts += [p.name for p in sorted((ROOT / "app").glob("*.py")) if p.name != "__init__.py"]
    missing = [p for p in parts if not re.search(rf"(?<![\w/]){re.escape(p)}", text)]
    assert not missing, f"docs/development.md does not name {missing}"


def test_links_point_to_files():
    bad = [p for page, text in _pages().items() for p in broken_links(page, text, ROOT / page)]
    assert not bad, "\n".join(bad)


def test_the_checks_catch_mistakes():
    """The checker itself: a made-up option, command, benchmark, choice or link is caught, and
    what the parsers have passes."""
    page = (
        "```bash\n"
        "zipmap reconstruct photos -o out --no-such-option  # a comment --not-an-option\n"
        "xvfb-run -a zipmap bench warp-speed\n"
        "zipmap render scene.zipmap -o views --source telepathy\n"
        "zipmap teleport scene.zipmap\n"
        "zipmap-studio photos --fly\n"
        "zipmap export scene.zipmap --format ply -o points.ply\n"
        "```\n"
        "Also `zipmap eval --every 4 --made-up` and `zipmap reconstruct --engine auto|colmap -o DIR`.\n"
    )
    shown = shown_commands("self-check", page)
    assert len(shown) == 8
    found = " ".join(p for s in shown for p in problems(s))
    for mistake in ("--no-such-option", "warp-speed", "telepathy", "zipmap teleport", "--fly", "--made-up"):
        assert mistake in found, f"{mistake} was not caught: {found}"
    assert "--not-an-option" not in found and "--format" not in found and "--engine" not in found
    table = "## zipmap export\n| option | |\n|---|---|\n| `--formatt ply` | |\n| `--format ply\\|obj` | |\n| `-o`, `--output PATH` | |\n"
    bad = " ".join(table_problems("docs/cli.md", table))
    assert "--formatt" in bad and "not obj" in bad and "--output" not in bad and "not ply" not in bad, bad
    text = "# Top\n[ok](README.md) [gone](docs/nowhere.md) [web](https://example.com) [here](#top) [lost](#nowhere)\n"
    links = broken_links("self.md", text, ROOT / "README.md")
    assert links == ["self.md: link to docs/nowhere.md: no such file", "self.md: link to #nowhere: no such heading"], links
