"""The Dockerfile parser: text in, a tree of instructions out, as BuildKit's parser builds it.

Parser directives (`# syntax=`, `# escape=`, `# check=`), comments, line continuations with
the escape character, `--flag` words, heredocs and each instruction's argument shape (JSON
or shell form, KEY=VALUE pairs, whitespace lists, ONBUILD sub-instructions). It decides
nothing about what an instruction means (dockerfile.py does) and expands no variables.
`Node.dump()` writes BuildKit's s-expression form, which the conformance corpus compares.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from corral.images.build.dockerfile_words import shell_words

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.+?)[ \t\n\f\r]*")
_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_KEYWORDS = ("add", "copy", "run")


class ParseError(ValueError):
    """A Dockerfile the parser cannot read; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Heredoc:
    """`<<NAME` content; `expand` is False when the name was quoted (no $VAR expansion)."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False  # <<-NAME: leading tabs are stripped from the content
    fd: int = 0


@dataclass(frozen=True)
class Node:
    """One instruction: keyword as written, flags, argument values and where it is.

    `values` holds strings, except ONBUILD whose single value is the sub-instruction's Node.
    `args` is the text after the flags, before any argument parsing.
    """

    keyword: str
    flags: tuple[str, ...] = ()
    values: tuple[str | Node, ...] = ()
    is_json: bool = False
    args: str = ""
    line: int = 0
    end_line: int = 0
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def name(self) -> str:
        return self.keyword.upper()

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(v for v in self.values if isinstance(v, str))

    def dump(self) -> str:
        """BuildKit's form: `(copy ["--from=a"] "src" "/dest")` without the parentheses."""
        text = self.keyword.lower()
        if self.flags:
            text += " [" + " ".join(go_quote(f) for f in self.flags) + "]"
        for value in self.values:
            text += " (" + value.dump() + ")" if isinstance(value, Node) else " " + go_quote(value)
        return text.strip()


@dataclass(frozen=True)
class ParsedDockerfile:
    nodes: tuple[Node, ...]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def dump(self) -> str:
        return "".join(f"({node.dump()})\n" for node in self.nodes)


def parse_dockerfile(text: str) -> ParsedDockerfile:
    """Parse a whole Dockerfile; a ParseError names the line at fault."""
    reader = _Reader(text)
    nodes = []
    while reader.has_more():
        node = reader.next_instruction()
        if node is not None:
            nodes.append(node)
    if not nodes:
        raise ParseError(reader.number, "file with no instructions")
    return ParsedDockerfile(tuple(nodes), reader.escape, dict(reader.found), tuple(reader.warnings))


class _Reader:
    """Physical lines in, logical instructions out; keeps the directive and escape state."""

    def __init__(self, text: str) -> None:
        self.lines: list[str] = re.findall(r"[^\n]*\n|[^\n]+$", text.removeprefix("\ufeff"))
        self.position = 0
        self.number = 0  # 1-based number of the last line read
        self.escape = "\\"
        self.found: dict[str, str] = {}
        self.directives_done = False
        self.warnings: list[str] = []

    def has_more(self) -> bool:
        return self.position < len(self.lines)

    def _take(self) -> str:
        raw = self.lines[self.position]
        self.position += 1
        self.number += 1
        return raw

    def next_instruction(self) -> Node | None:
        raw = self._take()
        token = self._directive(raw.rstrip("\r\n").lstrip())
        start = self.number
        text, ended = self._continuation("" if _is_comment(token) else token)
        if ended and not text:
            return None
        parts, empty_line = [text], False
        while not ended and self.has_more():
            raw = self._take()
            token = self._directive(raw.rstrip("\r\n"))
            if _is_comment(raw):
                continue
            if not token.strip():
                empty_line = True
                continue
            text, ended = self._continuation(token)
            parts.append(text)
        line = "".join(parts)
        if empty_line:
            self.warnings.append(f"line {self.number}: empty continuation line in {line!r}")
        try:
            node = node_from_line(line, self.escape)
        except ValueError as exc:
            raise ParseError(start, str(exc)) from None
        heredocs = self._heredocs(node, line, start)
        return Node(node.keyword, node.flags, node.values, node.is_json, node.args, start,
                    self.number, heredocs)

    def _directive(self, token: str) -> str:
        """Record `token` if it is a parser directive; directives end at the first line
        that is not one."""
        if self.directives_done:
            return token
        match = _DIRECTIVE.fullmatch(token[1:].lstrip()) if token.startswith("#") else None
        name = match.group(1).lower() if match else ""
        if match is None or name not in _DIRECTIVES:
            self.directives_done = True
            return token
        if name in self.found:
            raise ParseError(self.number, f"only one {name} parser directive can be used")
        value = match.group(2)
        if name == "escape":
            if value not in ("`", "\\"):
                raise ParseError(self.number, f"invalid escape token '{value}' does not "
                                 "match ` or \\")
            self.escape = value
        self.found[name] = value
        return token

    def _continuation(self, token: str) -> tuple[str, bool]:
        """(the line without its continuation mark, whether the instruction ends here)."""
        mark = re.escape(self.escape)
        match = re.search(rf"([^{mark}]){mark}[ \t]*\Z|^{mark}[ \t]*\Z", token)
        if match is None:
            return token, True
        return token[:match.start()] + (match.group(1) or ""), False

    def _heredocs(self, node: Node, line: str, start: int) -> tuple[Heredoc, ...]:
        if not _can_hold_heredoc(node) or "<<" not in line:
            return ()
        found = []
        for heredoc in heredocs_in(line):
            body, terminated = [], False
            while self.has_more():
                raw = self._take()
                candidate = raw.rstrip("\r\n")
                if (candidate.lstrip("\t") if heredoc.chomp else candidate) == heredoc.name:
                    terminated = True
                    break
                body.append(raw)
            if not terminated:
                raise ParseError(start, f"unterminated heredoc <<{heredoc.name}")
            found.append(Heredoc(heredoc.name, "".join(body), heredoc.expand, heredoc.chomp,
                                 heredoc.fd))
        return tuple(found)


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _can_hold_heredoc(node: Node) -> bool:
    if node.keyword.lower() == "onbuild" and node.values and isinstance(node.values[0], Node):
        node = node.values[0]
    return node.keyword.lower() in _HEREDOC_KEYWORDS and not node.is_json


def heredocs_in(line: str) -> list[Heredoc]:
    """The heredocs a line opens (`<<EOF`, `<<-EOF`, `3<<"EOF"`), contents still empty."""
    found = []
    for word in shell_words(line, raw_quotes=True, keep_escapes=True):
        match = _HEREDOC.match(word)
        if match is None or not match.group(3):
            continue
        cooked = shell_words(match.group(3), raw_quotes=False)
        raw = shell_words(match.group(3), raw_quotes=True)
        if len(cooked) != 1 or len(raw) != 1:
            continue
        quoted = _quote_count(raw[0]) != _quote_count(cooked[0])
        found.append(Heredoc(cooked[0], "", expand=not quoted, chomp=match.group(2) == "-",
                             fd=int(match.group(1) or 0)))
    return found


def _quote_count(word: str) -> int:
    return word.count("'") + word.count('"')


def node_from_line(line: str, escape: str) -> Node:
    """One logical line (continuations joined) as a Node, without heredoc bodies."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword, args = parts[0], ""
    flags: list[str] = []
    if len(parts) == 2:
        args, flags = _leading_flags(parts[1], escape)
    args = args.strip()
    parse = _ARGUMENTS.get(keyword.lower(), _ignored)
    values, is_json = parse(args, escape)
    return Node(keyword, tuple(flags), tuple(values), is_json, args)


def _leading_flags(text: str, escape: str) -> tuple[str, list[str]]:
    """Split `--a=1 --b="x y" rest` into ("rest", ["--a=1", "--b=x y"]); `--` ends flags."""
    flags: list[str] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if not text.startswith("--", position):
            return text[position:], flags
        word, position = _flag_word(text, position, escape)
        if word == "--":
            return text[position:], flags
        if word:
            flags.append(word)
        if position >= len(text):
            return "", flags


def _flag_word(text: str, position: int, escape: str) -> tuple[str, int]:
    """One flag word from `position`: quotes removed, escaped characters kept."""
    chars: list[str] = []
    quote = ""
    while position < len(text):
        char = text[position]
        if not quote and char.isspace():
            break
        position += 1
        if char in "'\"" and (not quote or char == quote):
            quote = "" if quote else char
            continue
        if char == escape:
            if position == len(text):
                break
            char = text[position]
            position += 1
        chars.append(char)
    return "".join(chars), position


_Values = tuple[list["str | Node"], bool]


def _ignored(args: str, escape: str) -> _Values:
    return [""], False  # an unknown instruction keeps one empty value, as BuildKit's does


def _string(args: str, escape: str) -> _Values:
    return ([args] if args else []), False


def _whitespace_list(args: str, escape: str) -> _Values:
    return (list(_WHITESPACE.split(args)) if args else []), False


def _json(args: str) -> list[str] | None:
    """The JSON array form, or None when `args` is not JSON at all; a JSON array holding
    something other than strings is an error, as in Docker."""
    text = args.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise ValueError("when using JSON array syntax, arrays must be comprised of strings "
                         "only")
    return value


def _maybe_json(args: str, escape: str) -> _Values:
    if not args:
        return [], False
    found = _json(args)
    return ([*found], True) if found is not None else ([args], False)


def _maybe_json_list(args: str, escape: str) -> _Values:
    found = _json(args)
    return ([*found], True) if found is not None else _whitespace_list(args, escape)


def _pairs(args: str, escape: str, keyword: str) -> _Values:
    """ENV/LABEL: `KEY VALUE` (the old form) or `K=V K2="V 2"`, as key, value, separator
    triples; quotes stay, variables are expanded later."""
    words = shell_words(args, raw_quotes=True, escape=escape, keep_escapes=True)
    if not words:
        return [], False
    if "=" not in words[0]:
        parts = _WHITESPACE.split(args, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{keyword} must have two arguments")
        return [parts[0], parts[1], ""], False
    values: list[str | Node] = []
    for word in words:
        if "=" not in word:
            raise ValueError(f"Syntax error - can't find = in {word!r}. Must be of the form: "
                             "name=value")
        key, _, value = word.partition("=")
        values += [key, value, "="]
    return values, False


def _names(args: str, escape: str) -> _Values:
    return [*shell_words(args, raw_quotes=True, escape=escape, keep_escapes=True)], False


def _healthcheck(args: str, escape: str) -> _Values:
    split = re.match(r"(\S*)\s*(.*)", args, re.DOTALL)
    assert split is not None  # the pattern matches any text
    kind, rest = split.group(1), split.group(2)
    if not kind:
        return [], False
    command, is_json = _maybe_json(rest, escape)
    return [kind, *command], is_json


def _onbuild(args: str, escape: str) -> _Values:
    return ([node_from_line(args, escape)] if args else []), False


_ARGUMENTS = {
    "add": _maybe_json_list, "copy": _maybe_json_list, "volume": _maybe_json_list,
    "arg": _names, "cmd": _maybe_json, "entrypoint": _maybe_json, "run": _maybe_json,
    "shell": _maybe_json, "env": lambda a, e: _pairs(a, e, "ENV"),
    "label": lambda a, e: _pairs(a, e, "LABEL"), "expose": _whitespace_list,
    "from": _whitespace_list, "healthcheck": _healthcheck, "maintainer": _string,
    "stopsignal": _string, "user": _string, "workdir": _string, "onbuild": _onbuild,
}


def go_quote(text: str) -> str:
    """A string quoted as Go's strconv.Quote does, which the corpus' results use."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable() and code != 0x7F:
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}
