"""Topic query text → syntax tree, with errors that say where and what was expected.

Grammar, loosest first (operators are upper-case; lower-case ``and``/``or``/``not`` are words)::

    query   := or
    or      := and ("OR" and)*
    and     := near (["AND"] near)*          juxtaposition means AND
    near    := unary (("NEAR/n" | "ONEAR/n") unary)*
    unary   := ("NOT" | "-") unary | primary
    primary := FIELD ":" primary | "(" or ")" | '"' words '"' | word | prefix*

A run of words (in an AND) that names an entity of the alias table becomes one ``Alias``
node: ``North Korea`` then also matches "DPRK" or "Pyongyang".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newswatch.matcher.aliases import AliasTable
from newswatch.matcher.errors import QueryError
from newswatch.matcher.syntax import FIELDS, Alias, And, Near, Node, Not, Or, Phrase, Prefix, Word
from newswatch.matcher.text import tokenize

MAX_DISTANCE = 100
#: Shortest prefix a wildcard may have: ``a*`` would match most of the dictionary.
MIN_PREFIX = 3
#: What one query may hold, so that its cost on an item is bounded before it is ever run
#: (a 94-byte chain of NEARs once took 1.6 s per 5,000-character item, a 601-character
#: run of ``(`` crashed the parser). Each limit is named in the error that refuses it.
MAX_QUERY_CHARS = 4096
MAX_DEPTH = 8  # groups and NOTs inside one another
MAX_TERMS = 64  # words, phrases, wildcards and entities in all
MAX_OR_WIDTH = 64  # alternatives of one OR (a set probe each: cheap)
MAX_NEARS = 4  # NEAR/ONEAR operators in all
MAX_NEAR_ALTERNATIVES = 16  # alternatives on one side of a NEAR (each name of an entity counts)
_NEAR = re.compile(r"^(O?NEAR)(?:/(\d+))?$")
_FIELD = re.compile(r"^([A-Za-z_]+):")


@dataclass(frozen=True)
class _Tok:
    kind: str  # word, prefix, phrase, field, and, or, not, near, lparen, rparen, end
    text: str
    pos: int
    distance: int = 0
    ordered: bool = False


def _lex(source: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Tok("lparen" if ch == "(" else "rparen", ch, i))
            i += 1
        elif ch == '"':
            end = source.find('"', i + 1)
            if end < 0:
                raise QueryError(source, i, "closing quote expected for this phrase")
            tokens.append(_Tok("phrase", source[i + 1 : end], i))
            i = end + 1
        elif ch == "-" and i + 1 < n and not source[i + 1].isspace() and source[i + 1] != "-":
            tokens.append(_Tok("not", "-", i))
            i += 1
        else:
            start = i
            while i < n and not source[i].isspace() and source[i] not in '()"':
                i += 1
            tokens.extend(_classify(source, source[start:i], start))
    tokens.append(_Tok("end", "", n))
    return tokens


def _classify(source: str, run: str, pos: int) -> list[_Tok]:
    if run in ("AND", "OR", "NOT"):
        return [_Tok(run.lower(), run, pos)]
    near = _NEAR.match(run)
    if near:
        if near.group(2) is None:
            raise QueryError(
                source, pos + len(run), f"{near.group(1)} needs a distance, e.g. {near.group(1)}/5"
            )
        distance = int(near.group(2))
        if not 1 <= distance <= MAX_DISTANCE:
            raise QueryError(source, pos, f"{near.group(1)} distance must be between 1 and {MAX_DISTANCE}")
        return [_Tok("near", run, pos, distance, near.group(1) == "ONEAR")]
    field = _FIELD.match(run)
    if field:
        name = field.group(1).lower()
        if name not in FIELDS:
            raise QueryError(
                source, pos, f"unknown field {field.group(1)!r}; expected one of {', '.join(FIELDS)}"
            )
        rest = run[field.end() :]
        return [_Tok("field", name, pos), *(_classify(source, rest, pos + field.end()) if rest else [])]
    if run.endswith("*"):
        stem = run.rstrip("*")
        parts = tokenize(stem)
        if len(parts) != 1 or len(parts[0].text) < MIN_PREFIX or "*" in stem:
            raise QueryError(
                source, pos, f"a wildcard needs a single word of at least {MIN_PREFIX} letters before '*'"
            )
        return [_Tok("prefix", parts[0].text, pos)]
    if "*" in run:
        raise QueryError(source, pos + run.index("*"), "'*' is only allowed at the end of a word")
    return [_Tok("word", run, pos)]


class _Parser:
    def __init__(self, source: str, aliases: AliasTable) -> None:
        if len(source) > MAX_QUERY_CHARS:
            raise QueryError(source[:80] + "…", 0, f"the query is longer than {MAX_QUERY_CHARS} characters")
        self.source = source
        self.aliases = aliases
        self.tokens = _lex(source)
        self.i = 0
        self.depth = 0
        self.terms = 0
        self.nears = 0

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.i]

    def error(self, message: str, tok: _Tok | None = None) -> QueryError:
        return QueryError(self.source, (tok or self.tok).pos, message)

    def take(self) -> _Tok:
        tok = self.tok
        self.i += 1
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.error('expected a query (a word, a "phrase" or a group)')
        node = self.parse_or(None)
        if self.tok.kind != "end":
            what = "')' without a matching '('" if self.tok.kind == "rparen" else repr(self.tok.text)
            raise self.error(f"unexpected {what}; expected AND, OR, NEAR/n or the end of the query")
        return node

    def parse_or(self, field: str | None) -> Node:
        start = self.tok
        children = [self.parse_and(field)]
        while self.tok.kind == "or":
            self.take()
            children.append(self.parse_and(field))
            if len(children) > MAX_OR_WIDTH:
                raise self.error(f"an OR may have at most {MAX_OR_WIDTH} alternatives (MAX_OR_WIDTH)", start)
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self, field: str | None) -> Node:
        children = [self.parse_near(field)]
        while True:
            if self.tok.kind == "and":
                self.take()
            elif self.tok.kind not in ("word", "prefix", "phrase", "field", "lparen", "not"):
                break
            children.append(self.parse_near(field))
        folded = self.fold_aliases(children)
        return folded[0] if len(folded) == 1 else And(tuple(folded))

    def parse_near(self, field: str | None) -> Node:
        left = self.parse_unary(field)
        while self.tok.kind == "near":
            op = self.take()
            self.nears += 1
            if self.nears > MAX_NEARS:
                raise self.error(f"a query may hold at most {MAX_NEARS} NEAR/ONEAR operators (MAX_NEARS)", op)
            right = self.parse_unary(field)
            for side in (left, right):
                if not _positional(side):
                    raise self.error(
                        f"{op.text} needs words, phrases, wildcards or OR-groups of them on both sides", op
                    )
                if _alternatives(side) > MAX_NEAR_ALTERNATIVES:
                    raise self.error(
                        f"a side of {op.text} may have at most {MAX_NEAR_ALTERNATIVES} alternatives, each name "
                        f"of an entity counting (MAX_NEAR_ALTERNATIVES)",
                        op,
                    )
            left = Near(left, right, op.distance, op.ordered)
        return left

    def parse_unary(self, field: str | None) -> Node:
        if self.tok.kind == "not":
            tok = self.take()
            self.enter(tok)
            node = Not(self.parse_unary(field))
            self.depth -= 1
            return node
        return self.parse_primary(field)

    def enter(self, tok: _Tok) -> None:
        """One level deeper (a group or a NOT); refused past MAX_DEPTH, before recursing."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"groups and NOTs may nest at most {MAX_DEPTH} levels deep (MAX_DEPTH)", tok)

    def term(self, tok: _Tok) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"a query may hold at most {MAX_TERMS} terms (MAX_TERMS)", tok)

    def parse_primary(self, field: str | None) -> Node:
        tok = self.take()
        if tok.kind in ("phrase", "prefix", "word"):
            self.term(tok)
        if tok.kind == "field":
            if field is not None:
                raise self.error(f"field {tok.text}: inside {field}: is not allowed", tok)
            if self.tok.kind in ("end", "rparen", "and", "or", "near"):
                raise self.error(f"expected a word, phrase or group after {tok.text}:")
            return self.parse_primary(tok.text)
        if tok.kind == "lparen":
            self.enter(tok)
            node = self.parse_or(field)
            if self.tok.kind != "rparen":
                raise self.error("')' expected to close the group opened", tok)
            self.take()
            self.depth -= 1
            return node
        if field == "lang" and tok.kind != "word":
            raise self.error("lang: takes a language code such as en or pt-br", tok)
        if tok.kind == "phrase":
            words = tuple(t.text for t in tokenize(tok.text))
            if not words:
                raise self.error("an empty phrase matches nothing", tok)
            return Phrase(words, field)
        if tok.kind == "prefix":
            return Prefix(tok.text, field)
        if tok.kind == "word":
            words = tuple(t.text for t in tokenize(tok.text))
            if not words:
                raise self.error(f"{tok.text!r} has no letters or digits to match", tok)
            if field == "lang":
                return Word(tok.text.lower(), field)
            # ``Jong-un``, ``U.S.``: the parts must appear together, as a phrase would.
            return Word(words[0], field) if len(words) == 1 else Phrase(words, field)
        expected = "a word, a \"phrase\", a wildcard or '('"
        found = "the end of the query" if tok.kind == "end" else repr(tok.text)
        self.i -= 1
        raise self.error(f"expected {expected}, found {found}")

    def fold_aliases(self, children: list[Node]) -> list[Node]:
        """Replace each run of words naming an alias entity with one Alias node (longest first)."""
        out: list[Node] = []
        i = 0
        while i < len(children):
            match = None
            node = children[i]
            if isinstance(node, Word) and node.field != "lang":
                for length in range(min(self.aliases.longest, len(children) - i), 0, -1):
                    run = children[i : i + length]
                    if all(isinstance(w, Word) and w.field == node.field for w in run):
                        words = tuple(w.text for w in run if isinstance(w, Word))
                        names = self.aliases.lookup(words)
                        if names is not None:
                            match = Alias(words, names, node.field)
                            i += length
                            break
            if match is None:
                out.append(node)
                i += 1
            else:
                out.append(match)
        return out


def _alternatives(node: Node) -> int:
    """How many alternatives a NEAR operand tries at each position (its evaluation width)."""
    if isinstance(node, Or):
        return sum(_alternatives(c) for c in node.children)
    if isinstance(node, Alias):
        return len(node.names)
    if isinstance(node, Near):
        return _alternatives(node.left) + _alternatives(node.right)
    return 1


def _positional(node: Node) -> bool:
    if isinstance(node, Or):
        return all(_positional(c) for c in node.children)
    return isinstance(node, Word | Prefix | Phrase | Alias | Near)


def parse(source: str, aliases: AliasTable | None = None) -> Node:
    """Parse ``source`` into a syntax tree, or raise QueryError (position + what was expected)."""
    return _Parser(source, aliases or AliasTable()).parse()
