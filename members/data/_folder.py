"""Read FER2013 stored as image folders, or another labelled set stored as class folders.

Two layouts:

* ``ROOT/train/<class>/...`` and ``ROOT/test/<class>/...`` (the FER2013 "folder version"). The
  Usage of an image comes from its file-name prefix ``Training_``, ``PublicTest_`` or
  ``PrivateTest_`` (the prefix wins over the folder). Images without a prefix are Training under
  ``train/`` and PrivateTest under ``test/``; if no image is PublicTest, a stratified, seeded
  ``val_fraction`` of the unprefixed ``train/`` images becomes PublicTest (the validation split).
* ``ROOT/<class>/...`` with no ``train/`` or ``test/``: every image is test data (PrivateTest). This
  is how another labelled set (CK+, JAFFE, ...) is brought in; classes may be missing.

Class folders are matched case-insensitively against ``CLASSES`` (plus a few spellings such as
``anger``, ``happiness``, ``sadness``); any other folder name is an error. Images may sit in
sub-folders of a class folder. Files Pillow does not register as images, and hidden files, are
skipped and counted in a note. Images are converted to 8-bit gray ("L"); a size other than 48x48
is an error unless ``resize=True`` (bilinear resize to 48x48).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ensemble.artifacts import CLASSES

from ._common import IMAGE_SIDE, USAGES, DataError

CLASS_ALIASES = {
    **{name: i for i, name in enumerate(CLASSES)},
    "anger": 0, "disgusted": 1, "fearful": 2, "happiness": 3, "sadness": 4, "surprised": 5,
}
SPLIT_FOLDERS = ("train", "test")
PREFIXES = {f"{u.lower()}_": u for u in USAGES}


@dataclass
class ImageEntry:
    """One image file found under the root."""

    rel: str  # path relative to the root, '/'-separated: the sort key of the ids
    path: Path
    label: int
    split: str | None  # 'train', 'test' or None (class folders directly under the root)
    prefix_usage: str | None  # Usage named by the file-name prefix, if any
    size: int
    mtime_ns: int


@dataclass
class FolderScan:
    """The images under a root, sorted by relative path, and what the scan noticed."""

    root: Path
    entries: list[ImageEntry]
    layout: str  # 'split' (train/ and test/) or 'flat' (class folders directly)
    skipped: int  # non-image or hidden files
    dir_mtime_ns: int  # newest folder mtime: adding, removing or renaming a file changes it

    def quick_fingerprint(self) -> dict:
        """Size, newest mtime and file count of the images, without reading them."""
        mtime_ns = max([self.dir_mtime_ns] + [e.mtime_ns for e in self.entries])
        return {
            "kind": "folder",
            "size": sum(e.size for e in self.entries),
            "mtime": mtime_ns / 1e9,
            "mtime_ns": mtime_ns,
            "files": len(self.entries),
        }


def _image_extensions() -> set[str]:
    return {ext.lower() for ext in Image.registered_extensions()}


def _class_index(folder: Path) -> int:
    label = CLASS_ALIASES.get(folder.name.lower())
    if label is None:
        raise DataError(
            f"{folder}: unknown class folder {folder.name!r}; expected one of {list(CLASSES)} "
            "(case-insensitive; also anger, disgusted, fearful, happiness, sadness, surprised)"
        )
    return label


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_folder(root: Path) -> FolderScan:
    """Find and label every image under ``root``; raises DataError for an unusable layout."""
    subdirs = _subfolders(root)
    splits = {p.name.lower(): p for p in subdirs if p.name.lower() in SPLIT_FOLDERS}
    if splits:
        others = [p.name for p in subdirs if p.name.lower() not in SPLIT_FOLDERS]
        if others:
            raise DataError(
                f"{root}: unexpected folder(s) {others} next to {sorted(splits)}; expected only train/ and test/ "
                "holding class folders"
            )
        class_dirs = [(name, c) for name, p in sorted(splits.items()) for c in _subfolders(p)]
        layout = "split"
    else:
        class_dirs = [(None, c) for c in subdirs]
        layout = "flat"
    extensions = _image_extensions()
    entries: list[ImageEntry] = []
    skipped = 0
    dir_mtime_ns = root.stat().st_mtime_ns
    for split, class_dir in class_dirs:
        label = _class_index(class_dir)
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            dir_mtime_ns = max(dir_mtime_ns, os.stat(dirpath).st_mtime_ns)
            for name in filenames:
                path = Path(dirpath) / name
                if name.startswith(".") or path.suffix.lower() not in extensions:
                    skipped += 1
                    continue
                st = path.stat()
                prefix = next((u for p, u in PREFIXES.items() if name.lower().startswith(p)), None)
                rel = path.relative_to(root).as_posix()
                entries.append(ImageEntry(rel, path, label, split, prefix, st.st_size, st.st_mtime_ns))
    if not entries:
        raise DataError(
            f"{root}: no images found; expected train/ and test/ folders holding class folders "
            f"({', '.join(CLASSES)}), or class folders directly"
            + (f" ({skipped} non-image or hidden file(s) skipped)" if skipped else "")
        )
    entries.sort(key=lambda e: e.rel)
    return FolderScan(root, entries, layout, skipped, dir_mtime_ns)


def content_hash(scan: FolderScan) -> str:
    """sha256 over every image's relative path, length and bytes, in id order."""
    digest = hashlib.sha256()
    for entry in scan.entries:
        _hash_entry(digest, entry, entry.path.read_bytes())
    return digest.hexdigest()


def _hash_entry(digest, entry: ImageEntry, data: bytes) -> None:
    digest.update(entry.rel.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little"))
    digest.update(data)


def decode_image(data: bytes, path: Path, resize: bool) -> np.ndarray:
    """Image bytes -> uint8 (48, 48) gray; DataError when unreadable or of the wrong size."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            gray = image.convert("L")
    except Exception as exc:  # Pillow raises many types for broken files
        raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None
    if gray.size != (IMAGE_SIDE, IMAGE_SIDE):
        if not resize:
            raise DataError(
                f"{path}: image is {gray.size[0]}x{gray.size[1]}, expected {IMAGE_SIDE}x{IMAGE_SIDE} "
                "(pass resize=True to resize images bilinearly)"
            )
        gray = gray.resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def read_folder_dataset(scan: FolderScan, resize: bool, val_fraction: float, seed: int, progress=None):
    """Decode every image of ``scan`` and assign Usage.

    Args:
        scan: The result of ``scan_folder``.
        resize: Resize images that are not 48x48 instead of failing.
        val_fraction: Share of each class of unprefixed ``train/`` images carved out as PublicTest.
        seed: Seed of that carve.
        progress: Optional tqdm-like object, updated once per image.

    Returns:
        ``(x, y, usage_codes, notes, sha256)``.
    """
    n = len(scan.entries)
    x = np.empty((n, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    digest = hashlib.sha256()
    for i, entry in enumerate(scan.entries):
        data = entry.path.read_bytes()
        _hash_entry(digest, entry, data)
        x[i] = decode_image(data, entry.path, resize)
        if progress is not None:
            progress.update(1)
    y = np.array([e.label for e in scan.entries], dtype=np.int64)
    usage, notes = assign_usage(scan, y, val_fraction, seed)
    if scan.skipped:
        notes.append(f"skipped {scan.skipped} non-image or hidden file(s)")
    return x, y, usage, notes, digest.hexdigest()


def assign_usage(scan: FolderScan, y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, list[str]]:
    """Usage codes (indices into USAGES) for the images of ``scan``, with notes saying how they were chosen."""
    train, public, private = (USAGES.index(u) for u in ("Training", "PublicTest", "PrivateTest"))
    if scan.layout == "flat":
        return np.full(len(y), private, dtype=np.uint8), [
            "no train/ or test/ folder: every image is test data (Usage 'PrivateTest')"
        ]
    codes = np.empty(len(y), dtype=np.uint8)
    unprefixed_train = np.zeros(len(y), dtype=bool)
    for i, entry in enumerate(scan.entries):
        if entry.prefix_usage is not None:
            codes[i] = USAGES.index(entry.prefix_usage)
        else:
            codes[i] = train if entry.split == "train" else private
            unprefixed_train[i] = entry.split == "train"
    notes = []
    unprefixed = sum(e.prefix_usage is None for e in scan.entries)
    if unprefixed:
        notes.append(
            f"{unprefixed} file name(s) carry no Training_/PublicTest_/PrivateTest_ prefix: "
            "train/ is Training and test/ is the test split (PrivateTest) for them"
        )
    if not np.any(codes == public) and unprefixed_train.any():
        if val_fraction > 0:
            carved = stratified_pick(np.flatnonzero(unprefixed_train), y, val_fraction, seed)
            codes[carved] = public
            notes.append(
                f"validation carved from train/: {carved.size} of {int(unprefixed_train.sum())} images become "
                f"PublicTest (val_fraction={val_fraction}, seed={seed}, stratified by class)"
            )
        else:
            notes.append("no validation split: no PublicTest images and val_fraction=0")
    return codes, notes


def stratified_pick(index: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """round(fraction * n_c) seeded random members of each class c among ``index``, sorted."""
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(y[index]):
        members = index[y[index] == label]
        k = int(np.floor(fraction * members.size + 0.5))
        picked.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
