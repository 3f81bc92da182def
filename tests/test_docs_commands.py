"""Every command the docs show exists, with the options it is shown with.

Reads README.md and every docs/*.md (whatever pages exist, so pages added later are
covered too): fenced code blocks line by line, and inline code spans that start with a
command. Each `solar-monitor ...` command (also `sudo ...`, `.venv/bin/solar-monitor`,
`python -m solar_monitor`) is parsed by the CLI's own argparse parser, the one behind
`--help`; each `deploy/install.sh` / `deploy/uninstall.sh` option must be listed by
that script's `--help`. Placeholders (FILE, N, <url>, ...) stand for any value.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from solar_monitor.cli import build_parser

from .conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}
COMMAND_WORD = re.compile(r"-.*|[a-z][a-z-]*")  # a subcommand or an option, not prose
INLINE = re.compile(r"(?<!`)`([^`\n]+(?:\n[^`\n]+)?)`(?!`)")  # a span may wrap one line
PROGRAMS = ("solar-monitor", "deploy/install.sh", "deploy/uninstall.sh", "make")
SUBCOMMANDS = set(next(a for a in build_parser()._actions  # noqa: SLF001 - argparse's
                       if a.dest == "command").choices)
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class DocCommand:
    page: str
    line: int
    program: str  # solar-monitor | deploy/install.sh | deploy/uninstall.sh
    args: tuple[str, ...]
    inline: bool = False  # a span in prose may name a command without its arguments

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.program} {' '.join(self.args)}"


def _program(token: str) -> str | None:
    """Which of our programs a command word runs (a path to it counts)."""
    return next((n for n in PROGRAMS if token == n or token.endswith("/" + n)
                 and n != "make"), None)


def _words(text: str) -> list[str] | None:
    """Shell words of one command line, comments dropped; None when it is not shell."""
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote: prose or output, not a command
        return None


def _commands_in(words: list[str]) -> list[tuple[str, list[str]]]:
    """(program, args) for each command of ours in a line (split at && ; | ||)."""
    found: list[tuple[str, list[str]]] = []
    current: list[str] = []
    for word in [*words, ";"]:
        if word not in SEPARATORS:
            current.append(word)
            continue
        while current and (current[0] in ("sudo", "env", "$", "exec")
                           or re.match(r"^[A-Z_][A-Z0-9_]*=", current[0])):
            current = current[1:]
            while current and current[0].startswith("-") and current[0] != "--":
                current = current[2:] if current[0] in ("-u", "-g") else current[1:]
        if current[1:3] == ["-m", "solar_monitor"] and "python" in current[0]:
            found.append(("solar-monitor", current[3:]))
        elif current and (program := _program(current[0])):
            found.append((program, current[1:]))
        current = []
    return found


def doc_commands() -> list[DocCommand]:
    out: list[DocCommand] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        name = page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else page.name
        chunks: list[tuple[int, str, bool]] = []
        for block in FENCE.finditer(text):
            if block.group(1).strip().lower() not in SHELL_FENCES:
                continue  # yaml, json, ...
            start = text.count("\n", 0, block.start(2)) + 1
            joined = block.group(2).replace("\\\n", " ")  # continuation lines
            chunks += [(start + n, line, False) for n, line in enumerate(joined.splitlines())]
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in INLINE.finditer(prose):
            content = span.group(1).replace("\n", " ").replace("\\|", "|")
            first = content.split()[0] if content.split() else ""
            line_start = prose.rfind("\n", 0, span.start()) + 1
            if first in SUBCOMMANDS and prose.startswith("| `", line_start):
                content = f"solar-monitor {content}"  # the README's table of commands
            elif first not in ("sudo", "python", "python3", "make") and not _program(first):
                continue
            if len(content.split()) > 1:  # a bare `solar-monitor` is the user's name
                chunks.append((prose.count("\n", 0, span.start()) + 1, content, True))
        for line, chunk, inline in chunks:
            words = _words(chunk.strip().removeprefix("$ "))
            for program, args in _commands_in(words or []):
                if args and not COMMAND_WORD.fullmatch(args[0]):
                    continue  # 'solar-monitor (timer)' in a diagram, 'solar-monitor bridge:'
                out.append(DocCommand(name, line, program, tuple(args), inline))
    return out


def _concrete(args: tuple[str, ...]) -> list[str]:
    """The args with usage syntax removed: [optional] brackets, a|b alternatives (the
    first), '...' and placeholders (FILE, N, <url>) as a value argparse accepts."""
    out = []
    for arg in args:
        arg = arg.strip("[]")
        if arg in ("", "...", "…") or arg.startswith("…"):
            continue
        if "|" in arg and not arg.startswith("-"):
            arg = arg.split("|")[0]
        if re.fullmatch(r"[A-Z]+|<[^>]*>", arg):
            arg = "1"  # parses as an int, a path or a string alike
        out.append(arg)
    return out


COMMANDS = doc_commands()
OURS = [c for c in COMMANDS if c.program == "solar-monitor"]
SCRIPTS = [c for c in COMMANDS if c.program.startswith("deploy/")]


def test_the_docs_show_the_commands_an_owner_needs() -> None:
    """Not a vacuous pass: the pages do show these commands, and the parser sees them."""
    shown = {c.args[0] for c in OURS if c.args}
    assert {"run", "check", "test-alert", "sheets", "digest", "replay", "parse", "demo"} \
        <= shown, shown
    assert any(c.program == "deploy/install.sh" for c in COMMANDS)
    assert any(c.program == "deploy/uninstall.sh" for c in COMMANDS)


@pytest.mark.parametrize("command", OURS, ids=str)
def test_each_solar_monitor_command_parses(command: DocCommand) -> None:
    args = _concrete(command.args)
    if not args or args[0] in ("-h", "--help"):
        return  # `solar-monitor --help` alone
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            named_only = command.inline and "arguments are required" in errors.getvalue()
            assert exc.code == 0 or named_only, f"{command}\n{errors.getvalue().strip()}"


def _script_options(program: str) -> set[str]:
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to ask the deploy scripts for --help")
    result = subprocess.run(["bash", str(REPO / program), "--help"], capture_output=True,
                            text=True, timeout=30)
    return set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", result.stdout + result.stderr))


@pytest.mark.parametrize("command", SCRIPTS, ids=str)
def test_each_deploy_script_option_is_in_its_help(command: DocCommand) -> None:
    known = _script_options(command.program)
    for arg in _concrete(command.args):
        option = arg.split("=")[0]
        if option.startswith("-"):
            assert option in known, f"{command}: {option} is not in {command.program} --help"


def test_each_make_target_exists() -> None:
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", (REPO / "Makefile").read_text(),
                             re.M))
    shown = [c for c in COMMANDS if c.program == "make"]
    assert {"demo", "test"} <= {c.args[0] for c in shown if c.args}
    for command in shown:
        goals = [a for a in command.args if "=" not in a and not a.startswith("-")]
        assert set(goals) <= targets, f"{command}: no such target in the Makefile"


def test_a_wrong_option_in_a_doc_would_fail(tmp_path: Path) -> None:
    """The reader and the check catch what drifted: a made-up option and subcommand."""
    page = tmp_path / "page.md"
    page.write_text("Run `sudo solar-monitor digest --mnth 2026-06`.\n\n```sh\n"
                    "solar-monitor sheets push   # gone\n"
                    "cd ~/solar-monitor && .venv/bin/solar-monitor replay DIR --notify\n```\n")
    PAGES.append(page)
    try:
        found = [c for c in doc_commands() if c.page.endswith("page.md")]
    finally:
        PAGES.remove(page)
    assert [c.args for c in found] == [("sheets", "push"), ("replay", "DIR", "--notify"),
                                       ("digest", "--mnth", "2026-06")]
    failures = 0
    for command in found:
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                build_parser().parse_args(_concrete(command.args))
            except SystemExit:
                failures += 1
    assert failures == 2
