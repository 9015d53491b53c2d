"""The text corpus of the peers benchmark: distinct English sentences from the man
pages installed on this machine (/usr/share/man/man1..8, roff source).

Nothing is downloaded: the pages come with the Debian packages installed here. The
sentences are ordered by a hash of their text, so the same set of installed pages
always gives the same corpus in the same order.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

MAN_ROOT = Path("/usr/share/man")
# Macros whose arguments are running text (man(7)); every other request line is markup.
_TEXT_MACROS = {"B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB"}
_BREAKS = {"PP", "P", "LP", "SH", "SS", "TP", "IP", "HP", "RS", "RE", "br", "sp", "nf", "fi"}
_ESCAPES = [
    (re.compile(r"\\f(\(..|\[[^]]*\]|.)"), ""),  # font changes
    (re.compile(r"\\\*(\(..|\[[^]]*\]|.)"), ""),  # strings
    (re.compile(r"\\\(..|\\\[[^]]*\]"), " "),  # special characters
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[&|^%:c]"), ""),
    (re.compile(r"\\(.)"), r"\1"),
]
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
_PLAIN = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'()/.\-]+[.!?]$")


def _unescape(text: str) -> str:
    for pattern, repl in _ESCAPES:
        text = pattern.sub(repl, text)
    return text


def _paragraphs(source: str) -> Iterator[str]:
    """Running text of one roff page, one paragraph at a time."""
    lines: list[str] = []
    for line in source.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith((".", "'")):
            macro, _, args = line[1:].partition(" ")
            if macro in _TEXT_MACROS:
                lines.append(args.replace('"', ""))
                continue
            if macro in _BREAKS and lines:
                yield " ".join(lines)
                lines = []
            continue
        if not line.strip():
            if lines:
                yield " ".join(lines)
                lines = []
            continue
        lines.append(line)
    if lines:
        yield " ".join(lines)


def page_sentences(source: str) -> Iterator[str]:
    """Plain sentences of 6 to 40 words from one page's roff source."""
    for paragraph in _paragraphs(source):
        text = " ".join(_unescape(paragraph).split())
        for sentence in _SENTENCE_END.split(text):
            words = sentence.split()
            if 6 <= len(words) <= 40 and _PLAIN.match(sentence):
                yield sentence


def man_pages(root: Path = MAN_ROOT) -> list[Path]:
    return sorted(p for p in root.glob("man[1-8]/*.gz") if p.is_file())


def sentences(limit: int, root: Path = MAN_ROOT) -> list[str]:
    """``limit`` distinct sentences in hash order (fewer if the machine has fewer)."""
    seen: set[str] = set()
    for page in man_pages(root):
        try:
            source = gzip.decompress(page.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        seen.update(page_sentences(source))
    ordered = sorted(seen, key=lambda s: hashlib.sha1(s.encode()).digest())
    return ordered[:limit]
