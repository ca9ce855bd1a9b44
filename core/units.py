"""Parsing of sizes given on the command line or in config files."""

from __future__ import annotations

import re

from defect_studio.errors import UserError

_SIZE = re.compile(r"^\s*(\d+)\s*(?:[x×*X]\s*(\d+))?\s*$")


def parse_size(text: object, error: type[UserError] = UserError,
               example: str = "256x256") -> tuple[int, int]:
    """"WxH" (also "W×H", "W*H"; one number for a square) as (width, height) of positive
    integers; `error` (a UserError class) with an example otherwise."""
    m = _SIZE.match(str(text))
    if not m:
        raise error(f"bad size {str(text)!r}: write it as WIDTHxHEIGHT, e.g. {example}")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) is not None else w
    if w < 1 or h < 1:
        raise error(f"bad size {str(text)!r}: width and height must be at least 1")
    return w, h


def count_of(n: int, word: str, plural: str | None = None) -> str:
    """"1 box", "2 boxes", "0 images": a count with its noun in the right number."""
    if n == 1:
        return f"1 {word}"
    if plural is None:
        plural = word + ("es" if word.endswith(("x", "s", "sh", "ch")) else "s")
    return f"{n} {plural}"
