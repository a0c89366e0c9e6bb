"""YAML files read defensively: playbooks and the config file.

A YAML file is input from whoever can write to the folder, so reading one is bounded:

- **Size.** A file over ``MAX_FILE_BYTES`` (1 MiB) is refused before it is read: a
  playbook is a page of steps, and a parse costs memory and time that grow with the
  text.
- **Regular files only.** The path is checked with ``stat`` before it is opened and again
  with ``fstat`` on what was opened (a rename in between changes nothing), and it is
  opened with ``O_NONBLOCK``: a symlink to a device (``/dev/zero``, ``/dev/tty``), a FIFO
  or a socket is refused with what it is, and can never block the reader.
- **Aliases.** An alias (``*name``) stands for a copy of its anchor. A few hundred bytes of
  nested aliases ("billion laughs") stand for billions of values; a document may stand
  for at most ``MAX_VALUES`` values once its aliases are expanded. The count is kept as
  the document is composed (each node's expanded size is computed once), so refusing a
  bomb costs as little as reading it; the problem names the alias's line. An alias used
  inside its own anchor (``x: &a [*a]``) is refused the same way.
- **Duplicate keys.** A mapping may hold each key once: YAML says so, and PyYAML would
  silently keep the last one (a second ``steps:`` replaced the first). Every duplicate is
  a problem at its line, naming the line of the first. Keys brought in by a merge
  (``<<: *defaults``) may be overridden, as YAML's merge means.

``parse`` gives the data and a map from key paths to line numbers (``Lines``);
``parse_past_duplicates`` gives duplicate keys as problems beside the data (each key's last
value, with its lines), for ``baton validate`` to go on checking the rest.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent

from engine.errors import PlaybookInvalid, Problem

MAX_FILE_BYTES = 1024 * 1024
"""The largest YAML file read (1 MiB); a bigger one is refused unread."""
MAX_VALUES = 100_000
"""The most values (scalars, lists and mappings) a document may stand for once its
aliases are expanded."""

Lines = dict[tuple[Any, ...], int]

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _not_regular(path: Path, mode: int) -> Problem:
    what = _kind(mode)
    if path.is_symlink():
        what = f"a symlink to {os.path.realpath(path)}, which is {what}"
    return Problem(str(path), None, f"not a regular file: it is {what}; only files are read")


def _too_big(path: Path, size: int) -> Problem:
    return Problem(
        str(path),
        None,
        f"file too large ({size:,} bytes; at most {MAX_FILE_BYTES:,} are read): "
        "split it into several playbooks",
    )


def read_text(path: Path) -> str:
    """The text of a regular UTF-8 file of at most ``MAX_FILE_BYTES``.

    Raises PlaybookInvalid with one problem saying what is wrong (missing, unreadable, not
    a regular file, too large, not UTF-8).
    """

    def refuse(problem: Problem) -> PlaybookInvalid:
        return PlaybookInvalid([problem])

    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise refuse(_not_regular(path, before.st_mode))
        if before.st_size > MAX_FILE_BYTES:
            raise refuse(_too_big(path, before.st_size))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(Problem(str(path), None, f"cannot read: {exc.strerror}")) from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # swapped between stat and open
            raise refuse(_not_regular(path, opened.st_mode))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise refuse(Problem(str(path), None, f"cannot read: {reason}")) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:  # it grew after the stat
        raise refuse(_too_big(path, len(raw)))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = Problem(str(path), None, f"not UTF-8 text (a bad byte at {exc.start})")
        raise refuse(problem) from None


class _Refused(Exception):
    """Stops composing or constructing: the problem is in the loader's list."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting alias expansions and refusing duplicate keys."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.problems: list[Problem] = []
        self.sizes: dict[int, int] = {}  # id(node) -> values it stands for, expanded
        self.expanded = 0  # values that aliases added so far

    def refuse(self, line: int | None, message: str) -> _Refused:
        self.problems.append(Problem(self.file, line, message))
        return _Refused()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            line = event.start_mark.line + 1
            node = self.anchors.get(event.anchor)
            super().compose_node(parent, index)  # consumes the alias; raises when undefined
            assert node is not None
            if node.end_mark is None:  # a list or mapping still being composed
                raise self.refuse(
                    line,
                    f"YAML alias *{event.anchor} is used inside its own anchor &{event.anchor}",
                )
            self.expanded += self.size(node)
            if self.expanded > MAX_VALUES:
                raise self.refuse(
                    line,
                    f"YAML aliases expand too far: at alias *{event.anchor} the document "
                    f"stands for more than {MAX_VALUES:,} values; write the values out or "
                    "use fewer nested aliases",
                )
            return node
        return super().compose_node(parent, index)

    def size(self, node: yaml.Node) -> int:
        """How many values ``node`` stands for with its aliases expanded (memoized)."""
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += self.size(key) + self.size(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += self.size(item)
        self.sizes[id(node)] = total
        return total

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        self._check_duplicates(node)  # before a merge (<<) is flattened into it
        return node

    def _check_duplicates(self, node: yaml.MappingNode) -> None:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            try:
                seen = first.get(key)
            except TypeError:
                continue  # unhashable: PyYAML reports it
            line = key_node.start_mark.line + 1
            if seen is None:
                first[key] = line
            else:
                self.problems.append(
                    Problem(
                        self.file,
                        line,
                        f"duplicate key {key!r} (first on line {seen}): a mapping may hold "
                        "each key once; merge the two or remove one",
                    )
                )


def _record_lines(node: yaml.Node, path: tuple[Any, ...], lines: Lines) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a list or mapping as a key: construction refuses it
            sub = (*path, key.value)
            if sub in lines:  # a duplicate key: its last value is the one kept
                for known in [p for p in lines if p[: len(sub)] == sub]:
                    del lines[known]
            lines[sub] = key.start_mark.line + 1
            _record_lines(value, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*path, i), lines)


def _syntax_error(file: str, exc: yaml.YAMLError) -> PlaybookInvalid:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, ComposerError) and exc.context:  # a duplicate anchor
        first = exc.context_mark
        at = f" on line {first.line + 1}" if first is not None else ""
        problem = f"{exc.context}{at}, {problem}"
    return PlaybookInvalid([Problem(file, line, f"YAML syntax error: {problem}")])


def parse(text: str, file: str) -> tuple[Any, Lines]:
    """Parse YAML text into data plus a map from key paths to line numbers.

    Raises PlaybookInvalid with every problem: a syntax error, an alias that expands too
    far or into itself, duplicate keys.
    """
    data, lines, duplicates = parse_past_duplicates(text, file)
    if duplicates:
        raise PlaybookInvalid(duplicates)
    return data, lines


def parse_past_duplicates(text: str, file: str) -> tuple[Any, Lines, list[Problem]]:
    """``parse``, except that duplicate keys come back as problems (sorted by line) beside
    the data, which keeps each key's last value: ``baton validate`` reports them and goes
    on checking the rest. Raises PlaybookInvalid for every other problem."""
    try:
        loader = _Loader(text, file)  # the reader refuses control characters here
    except yaml.YAMLError as exc:
        raise _syntax_error(file, exc) from exc
    try:
        node = loader.get_single_node()
        if node is not None and loader.size(node) > MAX_VALUES:
            raise loader.refuse(
                None, f"the document holds more than {MAX_VALUES:,} values; split it up"
            )
        lines: Lines = {}
        data = None
        if node is not None:
            _record_lines(node, (), lines)
            data = loader.construct_document(node)
    except _Refused:
        raise PlaybookInvalid(loader.problems) from None
    except yaml.YAMLError as exc:
        raise _syntax_error(file, exc) from exc
    except RecursionError:
        problem = Problem(
            file, None, "YAML nested too deeply (lists or mappings inside each other)"
        )
        raise PlaybookInvalid([problem]) from None
    finally:
        loader.dispose()
    return data, lines, sorted(loader.problems, key=lambda p: p.line or 0)
