"""Every command of ``synarrow`` and every one of its options is documented in docs/CLI.md.

The parser is the one ``synarrow.cli.main`` runs (``build_parser``); each command needs a
heading naming ``synarrow COMMAND``, and each option of it must appear in that section.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from synarrow.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "CLI.md"
HEADING = re.compile(r"^(#{1,6})\s+(.*)$", re.MULTILINE)


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    # argparse offers no public way to list subcommands; its actions are the documented model.
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Option strings (``--json``, ``-q``) and positional names (``PATH``) of a parser."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            found.extend(action.option_strings)
        else:
            found.append(action.metavar or action.dest)
    return found


def section(text: str, command: str) -> str | None:
    """The text under the heading that names ``synarrow COMMAND``, up to the next heading of
    the same or a higher level."""
    headings = list(HEADING.finditer(text))
    name = re.compile(rf"`?synarrow {re.escape(command)}`?(?![\w-])")
    for i, match in enumerate(headings):
        if name.search(match.group(2)):
            level = len(match.group(1))
            end = len(text)
            for later in headings[i + 1 :]:
                if len(later.group(1)) <= level:
                    end = later.start()
                    break
            return text[match.end() : end]
    return None


def mentioned(option: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_the_parser_has_commands() -> None:
    assert {"info", "keys", "get", "history", "sql", "compact", "check", "export"} <= set(
        commands()
    )


@pytest.mark.parametrize("command", sorted(commands()))
def test_command_is_documented(command: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    body = section(text, command)
    assert body is not None, f"docs/CLI.md has no heading for `synarrow {command}`"
    missing = [o for o in options(commands()[command]) if not mentioned(o, body)]
    assert not missing, f"docs/CLI.md, section `synarrow {command}`, does not mention {missing}"


def test_top_level_options_are_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    top = [s for a in build_parser()._actions for s in a.option_strings]
    missing = [o for o in top if not mentioned(o, text)]
    assert not missing, f"docs/CLI.md does not mention {missing}"


def test_every_documented_command_exists() -> None:
    """No section for a command that is gone."""
    known = set(commands())
    named = {
        m.group(1)
        for h in HEADING.finditer(DOC.read_text(encoding="utf-8"))
        for m in re.finditer(r"`synarrow ([a-z][\w-]*)`", h.group(2))
    }
    assert named <= known, f"docs/CLI.md documents unknown commands {sorted(named - known)}"
