"""Horizontal bar charts as PNG with no plotting library: a pixel buffer, a 3x5 font,
and the PNG container written with zlib and struct."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

# 3x5 glyphs, one int per row, bit 2 = left pixel.
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6),
    "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7), "F": (7, 4, 6, 4, 4),
    "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5), "I": (7, 2, 2, 2, 7), "J": (1, 1, 1, 5, 2),
    "K": (5, 5, 6, 5, 5), "L": (4, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5),
    "O": (2, 5, 5, 5, 2), "P": (6, 5, 6, 4, 4), "Q": (2, 5, 5, 6, 3), "R": (6, 5, 6, 5, 5),
    "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2), "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2),
    "W": (5, 5, 7, 7, 5), "X": (5, 5, 2, 5, 5), "Y": (5, 5, 2, 2, 2), "Z": (7, 1, 2, 4, 7),
    ".": (0, 0, 0, 0, 2), "-": (0, 0, 7, 0, 0), "=": (0, 7, 0, 7, 0), "/": (1, 1, 2, 4, 4),
    "%": (5, 1, 2, 4, 5), ":": (0, 2, 0, 2, 0), "(": (1, 2, 2, 2, 1), ")": (4, 2, 2, 2, 4),
    ",": (0, 0, 0, 2, 4), "@": (2, 5, 7, 4, 3), " ": (0, 0, 0, 0, 0),
}  # fmt: skip
SCALE = 2
ADVANCE = 4 * SCALE
ROW_H = 22
LABEL_W = 26 * ADVANCE
WIDTH = 960
INK = (30, 30, 30)
WHITE = (255, 255, 255)
PALETTE = [(70, 110, 190), (230, 140, 40), (80, 160, 90), (190, 70, 70)]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str
    series: int = 0  # colour index


@dataclass(frozen=True)
class Panel:
    title: str
    bars: list[Bar]


def _text(img: np.ndarray, x: int, y: int, text: str, colour: tuple[int, int, int]) -> None:
    for ch in text.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for row, bits in enumerate(glyph):
            for col in range(3):
                if bits & (4 >> col):
                    y0, x0 = y + row * SCALE, x + col * SCALE
                    img[y0 : y0 + SCALE, x0 : x0 + SCALE] = colour
        x += ADVANCE


def render(title: str, panels: list[Panel]) -> np.ndarray:
    """An RGB image: a title, then per panel a heading and one labelled bar per row."""
    height = 40 + sum(30 + ROW_H * len(p.bars) + 10 for p in panels)
    img = np.full((height, WIDTH, 3), 255, dtype=np.uint8)
    _text(img, 10, 10, title, INK)
    y = 40
    bar_room = WIDTH - LABEL_W - 20 - 14 * ADVANCE
    for panel in panels:
        _text(img, 10, y + 8, panel.title, INK)
        img[y + 24, 10 : WIDTH - 10] = (200, 200, 200)
        y += 30
        top = max((b.value for b in panel.bars), default=0.0) or 1.0
        for bar in panel.bars:
            _text(img, 10, y + 6, bar.label[:26], INK)
            length = max(1, int(bar_room * bar.value / top)) if bar.value > 0 else 0
            x0 = LABEL_W + 10
            img[y + 3 : y + ROW_H - 3, x0 : x0 + length] = PALETTE[bar.series % len(PALETTE)]
            _text(img, x0 + length + 6, y + 6, bar.text, INK)
            y += ROW_H
        y += 10
    return img


def encode_png(img: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``img`` (height, width, 3)."""
    height, width, _ = img.shape
    raw = b"".join(b"\x00" + img[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


__all__ = ["WHITE", "Bar", "Panel", "encode_png", "render"]
