"""Names shared by the FER2013 loaders: splits, classes, the error type and row wording."""

from __future__ import annotations

import sys

from ensemble.artifacts import CLASSES

USAGES = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIDE = 48
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE


class DataError(ValueError):
    """Expected bad input (a user's mistake); the message names the file and, for CSV rows, the line.

    Row convention, used everywhere: ``line N`` counts the header as line 1, so the first image is
    ``line 2 (data row 1)``; ``data row`` is 1-based over the images only.
    """


def where(row: int) -> str:
    """Wording for the 0-based data row ``row``: ``line row+2 (data row row+1)``."""
    return f"line {row + 2} (data row {row + 1})"


def class_list() -> str:
    """``0 angry, 1 disgust, ...`` for error messages."""
    return ", ".join(f"{i} {name}" for i, name in enumerate(CLASSES))


def say(message: str, verbose: bool) -> None:
    """Print a loader message on stderr (stdout stays clean for ``--json``) when ``verbose``."""
    if verbose:
        print(f"members.data: {message}", file=sys.stderr, flush=True)
