"""Reading YARA rule files: rules, their strings and conditions, with line numbers.

Rule files are untrusted input: a vendor's rule set is exactly what this audit
distrusts. So the reader never raises for bad content. A syntax error, a file
that is not UTF-8 or one larger than MAX_FILE_BYTES becomes an "error"
Finding with the file and line, and the other rules of the file are still
read. (A missing or unreadable *path* is not bad content: it raises OSError.)

Two passes. `split_source` finds each rule's extent with one regular-expression
scan (comments, quoted strings and regexes skipped, braces counted); it is
enough for a diff, which fully reads only the rules that changed. `parse_rule`
then reads one rule's header, meta, strings and condition. The condition is
kept as text; `parse_condition` turns it into a small expression tree for the
lints. The readings of strings as bytes (`text_bytes`, `hex_segments`,
`regex_samples`) live here too: they are about YARA's syntax, not about policy.

This is not a second YARA compiler: the semantic checks (undefined
identifiers, unknown modules, bad modifiers) are yara-x's, in compile.py.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Larger rule files are refused unread: real ones are well below (the largest
# file of the public signature-base is 1 MB); a huge file is a mistake or an
# attempt to exhaust the reviewer's tools.
MAX_FILE_BYTES = 8 * 1024 * 1024
RULE_SUFFIXES = (".yar", ".yara")
# Nesting deeper than this in a condition or a regex is refused rather than
# risk Python's recursion limit on a crafted rule.
MAX_DEPTH = 100

ERROR = "error"


@dataclass(frozen=True)
class RuleString:
    identifier: str  # "$name", or "$" for an anonymous string
    kind: str  # "text" | "hex" | "regex"
    value: str  # as written: text with its escapes, hex normalised, regex without slashes
    modifiers: tuple[str, ...]  # "nocase", "wide", "xor(1-255)", ...; regex /i and /s
    line: int = 0  # regex flags appear as "nocase" and "dotall"


@dataclass(frozen=True)
class Rule:
    name: str
    file: str
    line: int
    tags: tuple[str, ...]
    meta: dict[str, str]  # a key given more than once keeps every value, one per line
    strings: tuple[RuleString, ...]
    condition: str  # without comments, whitespace runs collapsed to one space
    imports: tuple[str, ...]  # the modules the rule's file imports
    text: str  # normalised source text of the rule (LF, no trailing spaces)
    sha256: str  # of `text`
    flags: tuple[str, ...] = ()  # "private", "global"


@dataclass(frozen=True)
class Finding:
    rule: str | None
    file: str
    line: int
    lint: str
    severity: str  # "error" | "high" | "medium" | "low"
    message: str

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "file": self.file,
            "line": self.line,
            "lint": self.lint,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass(frozen=True)
class RuleSource:
    """One rule's extent in its file, before it is parsed."""

    name: str
    file: str
    line: int
    text: str  # normalised as Rule.text
    sha256: str
    flags: tuple[str, ...]
    raw: str = field(repr=False, default="")  # the source slice, for parse_rule
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitFile:
    rules: list[RuleSource]
    findings: list[Finding]
    imports: tuple[str, ...]


# --- files -----------------------------------------------------------------------


def collect_rule_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and every .yar/.yara under directories (recursively, sorted).

    Raises FileNotFoundError for a path that does not exist: an audit of a
    mistyped path must not pass as an audit of nothing.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(RULE_SUFFIXES):
                        found.append(Path(root) / name)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(2, "no such file or directory", str(path))
    return found


def read_source(path: Path, display: str) -> tuple[str | None, list[Finding]]:
    """The file's text, or None and an error finding (too large, not UTF-8)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        return None, [
            _error(
                None,
                display,
                0,
                "size",
                f"file is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a rule file "
                "may have; it was not read",
            )
        ]
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        return None, [
            _error(
                None,
                display,
                line,
                "encoding",
                f"not UTF-8: byte 0x{byte:02x} at line {line}; rule files must be "
                "UTF-8 (no rule of this file was read)",
            )
        ]
    return text.removeprefix("\ufeff"), []


def parse_file(path: Path, display: str | None = None) -> tuple[list[Rule], list[Finding]]:
    """Every rule of a YARA file, and error findings for what could not be read."""
    where = display if display is not None else str(path)
    split = split_file(path, where)
    rules: list[Rule] = []
    findings = list(split.findings)
    for source in split.rules:
        parsed = parse_rule(source)
        if isinstance(parsed, Rule):
            rules.append(parsed)
        else:
            findings.append(parsed)
    return rules, findings


def parse_text(text: str, display: str = "<text>") -> tuple[list[Rule], list[Finding]]:
    """parse_file for source already in memory."""
    split = split_source(text, display)
    rules: list[Rule] = []
    findings = list(split.findings)
    for source in split.rules:
        parsed = parse_rule(source)
        if isinstance(parsed, Rule):
            rules.append(parsed)
        else:
            findings.append(parsed)
    return rules, findings


def split_file(path: Path, display: str) -> SplitFile:
    text, problems = read_source(path, display)
    if text is None:
        return SplitFile([], problems, ())
    return split_source(text, display)


def _error(rule: str | None, file: str, line: int, lint: str, message: str) -> Finding:
    return Finding(rule, file, line, lint, ERROR, message)


# --- pass 1: the extent of each rule ---------------------------------------------------

_SEGMENT = re.compile(
    r"""
    (?=[/"{}=mpgr])  # cheap first-character test: most positions start nothing
    (?:
    (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"[^"\\\n]*(?:\\.[^"\\\n]*)*")
  | (?P<regex>(?:=|\bmatches)\s*/(?:[^/\\\n]|\\.)[^/\\\n]*(?:\\.[^/\\\n]*)*/)
  | (?P<open>\{)
  | (?P<close>\})
  | (?P<rule>\b(?:(?:private|global)\s+)*rule\b)
    )
    """,
    re.S | re.X,
)
# What may stand between rules: blanks, comments, import and include.
_GAP_ITEM = re.compile(
    r"""\s+|//[^\n]*|/\*.*?\*/|(?P<kw>import|include)\s*"(?P<arg>[^"\\\n]*(?:\\.[^"\\\n]*)*)"
    """,
    re.S | re.X,
)
_HEADER = re.compile(
    r"""((?:(?:private|global)\s+)*)rule\s+([A-Za-z_][A-Za-z0-9_]*)\s*
        (?::\s*((?:[A-Za-z_][A-Za-z0-9_]*\s*)+))?$""",
    re.X,
)


def normalise(text: str) -> str:
    """LF line ends and no trailing blanks: what Rule.text and its hash are of."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


def split_source(source: str, display: str) -> SplitFile:
    """Find each rule's extent, the file's imports, and what lies between rules."""
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    findings: list[Finding] = []
    rules: list[tuple[int, int, int]] = []  # (start, end, line)
    depth = 0
    rule_start = -1
    rule_line = 0
    gap_start = 0
    line = 1
    counted = 0  # text[:counted] has line-1 newlines

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    for m in _SEGMENT.finditer(text):
        kind = m.lastgroup
        if kind in ("comment", "string", "regex"):
            continue
        if kind == "rule":
            if depth == 0:
                if rule_start >= 0:
                    # A rule keyword before the previous rule's body opened.
                    findings.append(
                        _error(
                            None,
                            display,
                            rule_line,
                            "syntax",
                            "rule header without a body: expected '{'",
                        )
                    )
                gap_err = _check_gap(text, gap_start, m.start())
                if gap_err is not None:
                    findings.append(_gap_finding(text, gap_err, display))
                rule_start = m.start()
                rule_line = line_at(rule_start)
            continue
        if kind == "open":
            if depth == 0 and rule_start < 0:
                findings.append(
                    _error(None, display, line_at(m.start()), "syntax", "'{' outside any rule")
                )
                gap_start = m.end()
                continue
            depth += 1
            continue
        # close
        if depth == 0:
            findings.append(
                _error(None, display, line_at(m.start()), "syntax", "'}' outside any rule")
            )
            gap_start = m.end()
            continue
        depth -= 1
        if depth == 0:
            rules.append((rule_start, m.end(), rule_line))
            rule_start = -1
            gap_start = m.end()

    if rule_start >= 0:
        findings.append(
            _error(
                None,
                display,
                rule_line,
                "syntax",
                "rule is not closed: end of file before its final '}'"
                + (" (an unterminated string, regex or comment?)" if depth else ""),
            )
        )
    else:
        gap_err = _check_gap(text, gap_start, len(text))
        if gap_err is not None:
            findings.append(_gap_finding(text, gap_err, display))

    imports = tuple(
        dict.fromkeys(
            g.group("arg")
            for g in _GAP_ITEM.finditer(_gaps(text, rules))
            if g.group("kw") == "import"
        )
    )
    includes = [
        (g.group("arg"), g.start())
        for g in _GAP_ITEM.finditer(_gaps(text, rules))
        if g.group("kw") == "include"
    ]
    if includes:
        findings.append(
            _error(
                None,
                display,
                _line_of(text, text.find("include")),
                "include",
                f'include "{includes[0][0]}": a rule file must be self-contained, or rules '
                "reach customers that this audit never read; list every file instead",
            )
        )

    sources: list[RuleSource] = []
    for start, end, rline in rules:
        raw = text[start:end]
        norm = normalise(raw)
        header = raw[: raw.find("{")]
        header = _strip_comments(header).strip()
        hm = _HEADER.match(header)
        name = hm.group(2) if hm else _guess_name(header)
        flags = tuple(hm.group(1).split()) if hm else ()
        sources.append(
            RuleSource(
                name=name,
                file=display,
                line=rline,
                text=norm,
                sha256=hashlib.sha256(norm.encode("utf-8")).hexdigest(),
                flags=flags,
                raw=raw,
                imports=imports,
            )
        )
    return SplitFile(sources, findings, imports)


def _gaps(text: str, rules: list[tuple[int, int, int]]) -> str:
    """The text between rules, with each rule replaced by a space."""
    parts: list[str] = []
    last = 0
    for start, end, _ in rules:
        parts.append(text[last:start])
        parts.append(" ")
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _check_gap(text: str, start: int, end: int) -> int | None:
    """Offset of the first thing between rules that is not allowed there."""
    pos = start
    while pos < end:
        m = _GAP_ITEM.match(text, pos, end)
        if m is None or m.end() == pos:
            return pos
        pos = m.end()
    return None


def _gap_finding(text: str, pos: int, display: str) -> Finding:
    snippet = text[pos : pos + 30].split("\n")[0]
    if text.startswith("/*", pos):
        what = "unterminated comment"
    elif text.startswith('"', pos):
        what = "unterminated string"
    else:
        what = f"unexpected text {snippet!r}: expected a rule, import or include"
    return _error(None, display, _line_of(text, pos), "syntax", what)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, max(pos, 0)) + 1


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", " ", text, flags=re.S)


def _guess_name(header: str) -> str:
    m = re.search(r"rule\s+([A-Za-z0-9_]+)", header)
    return m.group(1) if m else "?"


# --- pass 2: one rule -------------------------------------------------------------------


class SyntaxProblem(Exception):
    """A syntax error at an offset of the text being read (internal to this module)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


_TOKEN = re.compile(
    r"""
    (?P<ws>(?:\s+|//[^\n]*|/\*.*?\*/)+)
  | (?P<str>"[^"\\\n]*(?:\\.[^"\\\n]*)*")
  | (?P<sid>[$#@][A-Za-z0-9_]*\*?|![A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>0x[0-9A-Fa-f]+|0o[0-7]+|\d+(?:\.\d+)?(?:KB|MB)?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<<|>>|\.\.|[-+*\\%&|^~<>=(){}\[\]:,./])
    """,
    re.S | re.X,
)
_HEX = re.compile(r"\{((?:[^}/]|/(?![/*])|//[^\n]*|/\*.*?\*/)*)\}", re.S)
_REGEX = re.compile(r"/((?:[^/\\\n]|\\.)[^/\\\n]*(?:\\.[^/\\\n]*)*)/([A-Za-z]*)")
_HEX_ITEM = re.compile(r"~?[0-9A-Fa-f?]{2}|\[\s*\d*\s*(?:-\s*\d*\s*)?\]|[()|]")
_HEX_BODY = re.compile(r"(?:\s+|~?[0-9A-Fa-f?]{2}|\[\s*\d*\s*(?:-\s*\d*\s*)?\]|[()|])*")


@dataclass(frozen=True)
class Token:
    kind: str  # str | sid | num | id | op | regex | end
    text: str
    pos: int
    gap: bool  # preceded by blanks or a comment


class _Lexer:
    """Tokens of one rule, with YARA's two literal forms that need context (hex, regex)."""

    def __init__(self, text: str, pos: int = 0, end: int | None = None) -> None:
        self.text = text
        self.pos = pos
        self.end = len(text) if end is None else end
        self._peeked: Token | None = None

    def _skip(self) -> bool:
        m = _TOKEN.match(self.text, self.pos, self.end)
        if m is not None and m.lastgroup == "ws":
            self.pos = m.end()
            return True
        return False

    def peek(self) -> Token:
        if self._peeked is None:
            gap = self._skip()
            if self.pos >= self.end:
                self._peeked = Token("end", "", self.pos, gap)
            else:
                m = _TOKEN.match(self.text, self.pos, self.end)
                if m is None:
                    char = self.text[self.pos]
                    if char == '"':
                        raise SyntaxProblem("unterminated string", self.pos)
                    if self.text.startswith("/*", self.pos):
                        raise SyntaxProblem("unterminated comment", self.pos)
                    raise SyntaxProblem(f"unexpected character {char!r}", self.pos)
                kind = m.lastgroup
                assert kind is not None
                self._peeked = Token(kind, m.group(), m.start(), gap)
        return self._peeked

    def next(self) -> Token:
        token = self.peek()
        self._peeked = None
        self.pos = token.pos + len(token.text)
        return token

    def expect(self, text: str, what: str) -> Token:
        token = self.peek()
        if token.text != text or token.kind in ("str", "regex"):
            raise SyntaxProblem(f"expected {what}, found {_show(token)}", token.pos)
        return self.next()

    def literal(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        """A hex string or regex starting at the next non-blank character."""
        self._peeked = None
        self._skip()
        m = pattern.match(self.text, self.pos, self.end)
        if m is None:
            raise SyntaxProblem(f"unterminated or malformed {what}", self.pos)
        self.pos = m.end()
        return m


def _show(token: Token) -> str:
    return "end of rule" if token.kind == "end" else repr(token.text)


def parse_rule(source: RuleSource) -> Rule | Finding:
    """Read one rule; a syntax error becomes an error Finding at its line."""
    raw = source.raw
    try:
        return _parse_rule(source, raw)
    except SyntaxProblem as exc:
        line = source.line + raw.count("\n", 0, max(exc.pos, 0))
        return _error(source.name, source.file, line, "syntax", f"rule {source.name}: {exc}")
    except RecursionError:
        return _error(
            source.name, source.file, source.line, "syntax", "rule is nested too deeply to read"
        )


def _parse_rule(source: RuleSource, raw: str) -> Rule:
    body = raw.find("{")
    lexer = _Lexer(raw, body + 1, len(raw) - 1)  # between the braces
    header = _HEADER.match(_strip_comments(raw[:body]).strip())
    if header is None:
        raise SyntaxProblem(
            "malformed rule header: expected [private] [global] rule NAME [: TAGS] {", 0
        )
    tags = tuple(header.group(3).split()) if header.group(3) else ()

    def line_of(pos: int) -> int:
        return source.line + raw.count("\n", 0, pos)

    meta: dict[str, str] = {}
    strings: list[RuleString] = []
    token = lexer.peek()
    if token.text == "meta":
        lexer.next()
        lexer.expect(":", "':' after meta")
        _read_meta(lexer, meta)
        token = lexer.peek()
    if token.text == "strings":
        lexer.next()
        lexer.expect(":", "':' after strings")
        _read_strings(lexer, strings, line_of)
        token = lexer.peek()
    if token.text != "condition":
        raise SyntaxProblem(
            f"expected meta:, strings: or condition:, found {_show(token)}", token.pos
        )
    lexer.next()
    lexer.expect(":", "':' after condition")
    condition = _read_condition(lexer)
    if not condition:
        raise SyntaxProblem("empty condition", lexer.pos)
    return Rule(
        name=source.name,
        file=source.file,
        line=source.line,
        tags=tags,
        meta=meta,
        strings=tuple(strings),
        condition=condition,
        imports=source.imports,
        text=source.text,
        sha256=source.sha256,
        flags=source.flags,
    )


def _is_section(lexer: _Lexer, token: Token) -> bool:
    if token.kind != "id" or token.text not in ("meta", "strings", "condition"):
        return False
    save = lexer.pos, lexer._peeked
    lexer.next()
    colon = lexer.peek().text == ":"
    lexer.pos, lexer._peeked = save
    return colon


def _read_meta(lexer: _Lexer, meta: dict[str, str]) -> None:
    while True:
        token = lexer.peek()
        if token.kind == "end" or _is_section(lexer, token):
            return
        if token.kind != "id":
            raise SyntaxProblem(f"expected a meta name, found {_show(token)}", token.pos)
        key = lexer.next().text
        lexer.expect("=", f"'=' after meta {key}")
        value_token = lexer.next()
        if value_token.text == "-":
            number = lexer.next()
            if number.kind != "num":
                raise SyntaxProblem(f"expected a number after '-' in meta {key}", number.pos)
            value = "-" + number.text
        elif value_token.kind == "str":
            value = unescape(value_token.text[1:-1])
        elif value_token.kind == "num" or value_token.text in ("true", "false"):
            value = value_token.text
        else:
            raise SyntaxProblem(
                f"meta {key}: expected a string, number, true or false, found {_show(value_token)}",
                value_token.pos,
            )
        meta[key] = f"{meta[key]}\n{value}" if key in meta else value


def _read_strings(lexer: _Lexer, strings: list[RuleString], line_of: Callable[[int], int]) -> None:
    while True:
        token = lexer.peek()
        if token.kind == "end" or _is_section(lexer, token):
            if not strings:
                raise SyntaxProblem("strings: section without strings", token.pos)
            return
        if token.kind != "sid" or not token.text.startswith("$") or token.text.endswith("*"):
            raise SyntaxProblem(
                f"expected a string identifier like $name, found {_show(token)}", token.pos
            )
        ident = lexer.next().text
        lexer.expect("=", f"'=' after {ident}")
        lexer._peeked = None
        lexer._skip()
        start = lexer.pos
        first = raw_char = lexer.text[start : start + 1]
        flags: list[str] = []
        if first == '"':
            value_token = lexer.next()
            if value_token.kind != "str":
                raise SyntaxProblem(f"{ident}: unterminated string", start)
            kind, value = "text", value_token.text[1:-1]
        elif first == "{":
            m = lexer.literal(_HEX, f"hex string {ident}")
            kind, value = "hex", _normalise_hex(m.group(1), ident, start)
        elif first == "/":
            m = lexer.literal(_REGEX, f"regular expression {ident}")
            kind, value = "regex", m.group(1)
            for flag in m.group(2):
                if flag not in "is":
                    raise SyntaxProblem(f"{ident}: unknown regex flag {flag!r}", m.start(2))
                flags.append("nocase" if flag == "i" else "dotall")
        else:
            raise SyntaxProblem(
                f'{ident}: expected a "text", {{ hex }} or /regex/ string, found {raw_char!r}',
                start,
            )
        modifiers = flags + _read_modifiers(lexer)
        strings.append(RuleString(ident, kind, value, tuple(modifiers), line_of(start)))


def _read_modifiers(lexer: _Lexer) -> list[str]:
    """Identifiers after a string, with their (arguments); yara-x judges which exist."""
    modifiers: list[str] = []
    while True:
        token = lexer.peek()
        if token.kind != "id" or _is_section(lexer, token):
            return modifiers
        name = lexer.next().text
        if lexer.peek().text == "(" and not lexer.peek().gap:
            parts = [name]
            depth = 0
            while True:
                t = lexer.next()
                if t.kind == "end":
                    raise SyntaxProblem(f"unclosed ( after modifier {name}", t.pos)
                parts.append(t.text)
                depth += {"(": 1, ")": -1}.get(t.text, 0) if t.kind == "op" else 0
                if depth == 0:
                    break
            name = "".join(parts)
        modifiers.append(name)


def _normalise_hex(body: str, ident: str, pos: int) -> str:
    if "/" in body:
        body = _strip_comments(body)
    if _HEX_BODY.fullmatch(body) is None:
        bad = _HEX_BODY.match(body)
        at = bad.end() if bad else 0
        raise SyntaxProblem(f"{ident}: invalid hex string near {body[at : at + 10].strip()!r}", pos)
    items = _HEX_ITEM.findall(body)
    if not items:
        raise SyntaxProblem(f"{ident}: empty hex string", pos)
    if "[" in body:  # jumps may hold blanks: [ 2 - 4 ]
        items = ["".join(item.split()) if item[0] == "[" else item for item in items]
    return " ".join(items).upper()


def _read_condition(lexer: _Lexer) -> str:
    parts: list[str] = []
    previous = ""
    while True:
        token = lexer.peek()
        if token.kind == "end":
            return "".join(parts).strip()
        if previous == "matches" and token.text == "/":
            m = lexer.literal(_REGEX, "regular expression after 'matches'")
            text = m.group()
        else:
            text = lexer.next().text
        if parts and token.gap:
            parts.append(" ")
        parts.append(text)
        previous = text


def unescape(value: str) -> str:
    """A YARA text string's escapes (\\" \\\\ \\n \\t \\r \\xHH) resolved, as text."""
    if "\\" not in value:
        return value
    return text_bytes(value).decode("utf-8", errors="replace")


_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)", re.S)
_SIMPLE_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", '"': b'"', "\\": b"\\"}


def text_bytes(value: str) -> bytes:
    """The bytes a text string (as written, with escapes) looks for."""
    if "\\" not in value:
        return value.encode("utf-8")
    out = bytearray()
    last = 0
    for m in _ESCAPE.finditer(value):
        out += value[last : m.start()].encode("utf-8")
        esc = m.group(1)
        if esc[0] == "x" and len(esc) == 3:
            out.append(int(esc[1:], 16))
        else:
            out += _SIMPLE_ESCAPES.get(esc, esc.encode("utf-8"))
        last = m.end()
    out += value[last:].encode("utf-8")
    return bytes(out)


def hex_segments(value: str) -> list[bytes]:
    """The runs of fixed bytes of a hex string, split at wildcards and jumps.

    Of an alternative ( A | B ) only the first is read: enough to see what the
    string is about, without enumerating every combination.
    """
    segments: list[bytes] = []
    current = bytearray()
    items = value.split()
    skip_depth = 0  # > 0 while inside an alternative's later branches
    depth = 0
    for item in items:
        if item == "(":
            depth += 1
            continue
        if item == ")":
            if skip_depth == depth:
                skip_depth = 0
            depth -= 1
            continue
        if item == "|":
            if skip_depth == 0:
                skip_depth = depth
            continue
        if skip_depth:
            continue
        if len(item) == 2 and "?" not in item:
            current.append(int(item, 16))
            continue
        # ??, nibble wildcards, ~XX and [n-m] jumps end the run
        if current:
            segments.append(bytes(current))
            current = bytearray()
    if current:
        segments.append(bytes(current))
    return segments


# --- regexes, approximately: strings they match ------------------------------------------


_CLASS_SHORTHAND = {"s": " ", "S": "", "w": "", "W": " ", "d": "0", "D": "", "b": "", "B": ""}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}


def regex_samples(pattern: str, limit: int = 16) -> list[str]:
    """A few strings the regex matches, approximately and in linear time.

    Literal characters are kept; `.`, broad classes and shorthands become
    nothing or a blank (they are what obfuscation puts between letters, e.g.
    /T.?O.?P.?S.?E.?C.?R.?E.?T/); a class of one letter's cases ([Tt]) is that
    letter; each branch of an alternative gives its own samples; optional and
    repeated parts appear once. Never runs the regex, so a pathological one
    costs nothing here. Returns [] for what it cannot read.
    """
    try:
        samples, end = _regex_seq(pattern, 0, limit, 0)
    except (IndexError, ValueError, RecursionError):
        return []
    if end != len(pattern):
        return []
    return [s for s in samples if s][:limit] or ([""] if samples else [])


def _regex_seq(p: str, i: int, limit: int, depth: int) -> tuple[list[str], int]:
    """Alternatives of a sequence, up to ')' or the end."""
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    branches: list[str] = []
    current = [""]
    while i < len(p) and p[i] != ")":
        c = p[i]
        if c == "|":
            branches.extend(current)
            current = [""]
            i += 1
            continue
        if c == "(":
            j = i + 1
            if p.startswith("?:", j):
                j += 2
            item, j = _regex_seq(p, j, limit, depth + 1)
            if j >= len(p) or p[j] != ")":
                raise ValueError("unclosed group")
            i = j + 1
        elif c == "[":
            item, i = _regex_class(p, i)
        elif c == "\\":
            esc = p[i + 1]
            if esc == "x":
                item, i = [chr(int(p[i + 2 : i + 4], 16))], i + 4
            elif esc in _CLASS_SHORTHAND:
                item, i = [_CLASS_SHORTHAND[esc]], i + 2
            else:
                item, i = [_CHAR_ESCAPES.get(esc, esc)], i + 2
        elif c in "^$" or c == ".":
            item, i = [""], i + 1
        else:
            item, i = [c], i + 1
        # quantifier
        optional = False
        if i < len(p) and p[i] in "?*+{":
            q = p[i]
            if q == "{":
                m = re.match(r"\{(\d*)(?:,(\d*))?\}", p[i:])
                if m is None:
                    raise ValueError("bad repetition")
                optional = (m.group(1) or "0") == "0"
                i += m.end()
            else:
                optional = q in "?*"
                i += 1
            if i < len(p) and p[i] == "?":  # lazy
                i += 1
        if optional and item != [""]:
            item = [*item, ""]
        current = [a + b for a in current for b in item][:limit]
    branches.extend(current)
    return branches[: limit * 2], i


def _regex_class(p: str, i: int) -> tuple[list[str], int]:
    """[...]: its one letter (in either case), or its few characters, else a blank."""
    j = i + 1
    negated = j < len(p) and p[j] == "^"
    if negated:
        j += 1
    chars: list[str] = []
    ranges = False
    first = True
    while j < len(p) and (p[j] != "]" or first):
        first = False
        c = p[j]
        if c == "\\":
            esc = p[j + 1]
            if esc == "x":
                c, j = chr(int(p[j + 2 : j + 4], 16)), j + 4
            else:
                if esc in _CLASS_SHORTHAND:
                    ranges = True
                c, j = _CHAR_ESCAPES.get(esc, esc), j + 2
        else:
            j += 1
        if j < len(p) and p[j] == "-" and j + 1 < len(p) and p[j + 1] != "]":
            ranges = True
            j += 2 if p[j + 1] != "\\" else 4
            continue
        chars.append(c)
    if j >= len(p):
        raise ValueError("unclosed class")
    end = j + 1
    if negated or ranges or not chars:
        return [""], end
    folded = {c.casefold() for c in chars}
    if len(folded) == 1:
        return [chars[0]], end
    if len(chars) <= 3:
        return list(dict.fromkeys(chars)), end
    return [""], end


# --- conditions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cond:
    """A node of a condition: and/or/not, `N of SET`, or an opaque atom.

    Atoms are comparisons, calls, `$a at 0`, `#a > 2`, `for ... in`: whatever
    is not boolean structure; the lints classify them by their tokens.
    """

    op: str  # and | or | not | of | atom | true | false
    args: tuple[Cond, ...] = ()
    tokens: tuple[Token, ...] = ()  # atom: its tokens; of: those of its set
    quant: str = ""  # of: any | all | none | N | N%
    items: tuple[str, ...] = ()  # of: $patterns ("them" is every string)


_BOOL_END = frozenset({"and", "or", ")", ","})


def tokenize_condition(condition: str) -> list[Token]:
    lexer = _Lexer(condition)
    tokens: list[Token] = []
    previous = ""
    while True:
        if previous == "matches" and lexer.peek().text == "/":
            m = lexer.literal(_REGEX, "regular expression after 'matches'")
            tokens.append(Token("regex", m.group(), m.start(), True))
            previous = ""
            continue
        token = lexer.next()
        if token.kind == "end":
            return tokens
        tokens.append(token)
        previous = token.text


def parse_condition(condition: str) -> Cond:
    """The boolean structure of a condition. Raises SyntaxProblem when unreadable."""
    tokens = tokenize_condition(condition)
    parser = _CondParser(tokens)
    node = parser.expr(0)
    if parser.at < len(tokens):
        raise SyntaxProblem(
            f"unexpected {tokens[parser.at].text!r} in condition", tokens[parser.at].pos
        )
    return node


class _CondParser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, ahead: int = 0) -> str:
        i = self.at + ahead
        return self.tokens[i].text if i < len(self.tokens) else ""

    def expr(self, depth: int) -> Cond:
        if depth > MAX_DEPTH:
            raise SyntaxProblem("condition nested too deeply", 0)
        args = [self.conj(depth)]
        while self.peek() == "or":
            self.at += 1
            args.append(self.conj(depth))
        return args[0] if len(args) == 1 else Cond("or", tuple(args))

    def conj(self, depth: int) -> Cond:
        args = [self.unary(depth)]
        while self.peek() == "and":
            self.at += 1
            args.append(self.unary(depth))
        return args[0] if len(args) == 1 else Cond("and", tuple(args))

    def unary(self, depth: int) -> Cond:
        if self.peek() == "not":
            self.at += 1
            return Cond("not", (self.unary(depth + 1),))
        if self.peek() == "defined":
            self.at += 1
            return self.unary(depth + 1)
        return self.primary(depth + 1)

    def primary(self, depth: int) -> Cond:
        start = self.at
        text = self.peek()
        if text == "":
            raise SyntaxProblem("condition ends too early", 0)
        if text in ("true", "false") and self.peek(1) in ("", *_BOOL_END):
            self.at += 1
            return Cond(text)
        if text == "(":
            self.at += 1
            inner = self.expr(depth + 1)
            if self.peek() != ")":
                raise SyntaxProblem("unbalanced ( in condition", 0)
            self.at += 1
            if self.peek() in ("", *_BOOL_END):
                return inner
            self.at = start  # `(a + b) > c`: arithmetic, read as one atom
            return self.atom()
        if text == "for":
            return self.for_expr(depth)
        quant = self.quantifier()
        if quant is not None and self.peek() == "of":
            self.at += 1
            return self.of_expr(quant, depth)
        self.at = start
        return self.atom()

    def quantifier(self) -> str | None:
        text = self.peek()
        if text in ("any", "all", "none"):
            self.at += 1
            return text
        if self.at < len(self.tokens) and self.tokens[self.at].kind == "num":
            self.at += 1
            if self.peek() == "%":
                self.at += 1
                return text + "%"
            return text
        return None

    def of_expr(self, quant: str, depth: int) -> Cond:
        items: list[str] = []
        args: list[Cond] = []
        set_start = self.at
        if self.peek() == "them":
            self.at += 1
            items.append("them")
        elif self.peek() == "(":
            self.at += 1
            while True:
                token = self.tokens[self.at] if self.at < len(self.tokens) else None
                if token is None:
                    raise SyntaxProblem("unclosed set in condition", 0)
                if token.kind == "sid" and token.text.startswith("$"):
                    items.append(token.text)
                    self.at += 1
                elif token.kind == "id" and self.peek(1) == "*":
                    self.at += 2  # a rule-name wildcard
                    args.append(Cond("atom", tokens=(token,)))
                else:
                    args.append(self.expr(depth + 1))
                if self.peek() == ",":
                    self.at += 1
                    continue
                if self.peek() == ")":
                    self.at += 1
                    break
                raise SyntaxProblem(f"unexpected {self.peek()!r} in a set", 0)
        else:
            raise SyntaxProblem("expected 'them' or a (set) after 'of'", 0)
        set_tokens = tuple(self.tokens[set_start : self.at])
        if self.peek() == "at":
            self.at += 1
            self.atom()  # the offset
        elif self.peek() == "in":
            self.at += 1
            self.balanced()
        return Cond("of", tuple(args), set_tokens, quant, tuple(items))

    def for_expr(self, depth: int) -> Cond:
        start = self.at
        self.at += 1
        quant = self.quantifier()
        if quant is None:
            self.atom_tokens()  # for <expr> ...
            quant = "any"
        if self.peek() == "of":
            self.at += 1
            node = self.of_expr(quant, depth)
            if self.peek() == ":":
                self.at += 1
                self.balanced()
            return node
        # for ... in (...) : ( ... ): opaque, an atom over everything it names
        while self.at < len(self.tokens) and self.peek() != ":":
            self.at += 1
        if self.peek() != ":":
            raise SyntaxProblem("expected ':' in for expression", 0)
        self.at += 1
        self.balanced()
        return Cond("atom", tokens=tuple(self.tokens[start : self.at]))

    def balanced(self) -> None:
        if self.peek() != "(":
            raise SyntaxProblem("expected '('", 0)
        depth = 0
        while self.at < len(self.tokens):
            text = self.tokens[self.at].text if self.tokens[self.at].kind == "op" else ""
            self.at += 1
            if text == "(":
                depth += 1
            elif text == ")":
                depth -= 1
                if depth == 0:
                    return
        raise SyntaxProblem("unbalanced ( in condition", 0)

    def atom_tokens(self) -> tuple[Token, ...]:
        start = self.at
        depth = 0
        while self.at < len(self.tokens):
            token = self.tokens[self.at]
            text = token.text if token.kind in ("op", "id") else ""
            if depth == 0 and (text in _BOOL_END or (text == "of" and self.at > start)):
                break
            if text in ("(", "["):
                depth += 1
            elif text in (")", "]"):
                depth -= 1
            self.at += 1
        if self.at == start:
            raise SyntaxProblem(f"expected an expression, found {self.peek()!r}", 0)
        return tuple(self.tokens[start : self.at])

    def atom(self) -> Cond:
        return Cond("atom", tokens=self.atom_tokens())


def walk(node: Cond) -> Iterator[Cond]:
    yield node
    for arg in node.args:
        yield from walk(arg)
