"""Faces in images: reading and checking an image, finding its faces, cropping them to 48x48 grey.

The ground floor of prediction, shared by photos (``members.predict``), videos (``members.video``)
and the Python API (``members.api``); it imports neither of them. Faces are found with OpenCV's
bundled frontal-face Haar cascade (``cv2.data.haarcascades``; nothing is downloaded); each box is made
square around its centre, converted to grey and resized to 48x48.

Bad input (a missing file, a file that is not an image, an empty array, a 4-channel image, values
outside [0, 255]) raises ``FaceInputError``, a ``ValueError`` whose message names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
FACE_SIDE = 48
CHANNEL_ORDERS = ("rgb", "bgr")
ImageLike = Union[str, Path, np.ndarray]


class FaceInputError(ValueError):
    """An image, a face batch or an option that cannot be used (a user's mistake); the message names it."""


@dataclass
class Face:
    """One detected face: its box in the photo (x, y, w, h) and its 48x48 grey crop."""

    box: tuple[int, int, int, int]
    crop: np.ndarray


def read_image(path: str | Path) -> np.ndarray:
    """A photo as BGR uint8 (H, W, 3); FaceInputError when missing or not an image OpenCV decodes."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise FaceInputError(f"{path}: file not found")
    if not path.is_file():
        raise FaceInputError(f"{path}: not a file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise FaceInputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FaceInputError(f"{path}: not an image OpenCV can read (empty, truncated or not a picture format)")
    return image


def _as_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as uint8: integers or floats within [0, 255] (floats rounded); FaceInputError otherwise."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise FaceInputError(f"{what} must hold numbers in [0, 255] (uint8, or integers / floats in that range). "
                             f"Received: dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise FaceInputError(f"{what} holds NaN or infinite values")
    low, high = array.min(), array.max()
    if low < 0 or high > 255:
        raise FaceInputError(f"{what} must hold values in [0, 255] (a float image scaled to [0, 1] must be "
                             f"multiplied by 255 first). Received: values from {low:g} to {high:g}, dtype {array.dtype}")
    return np.rint(array).astype(np.uint8) if np.issubdtype(array.dtype, np.floating) else array.astype(np.uint8)


def as_image(image: ImageLike, channels: str = "rgb") -> np.ndarray:
    """An image path or array as the BGR (H, W, 3) or grey (H, W) uint8 array the detector reads.

    Args:
        image: a path to a photo (any format OpenCV reads), or a numpy array: grey (H, W) or
            (H, W, 1), colour (H, W, 3); uint8, or integers / floats within [0, 255].
        channels: the order of a 3-channel array's channels, ``rgb`` (PIL, imageio, scikit-image,
            matplotlib) or ``bgr`` (OpenCV). Ignored for paths and grey arrays.

    Returns:
        uint8 BGR (H, W, 3) or grey (H, W).

    Raises:
        FaceInputError: a missing or unreadable file, an empty array, a shape that is not an image
            (4 channels, 1-D, a batch), values outside [0, 255].
    """
    if channels not in CHANNEL_ORDERS:
        raise FaceInputError(f"channels must be one of {list(CHANNEL_ORDERS)}. Received: channels={channels!r}")
    if isinstance(image, (str, Path)):
        return read_image(image)
    if not isinstance(image, np.ndarray):
        raise FaceInputError(f"image must be a path or a numpy array. Received: {type(image).__name__}")
    if image.size == 0:
        raise FaceInputError(f"image is empty. Received: shape {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        raise FaceInputError(f"image has 4 channels (RGBA or BGRA?): drop the alpha channel first, e.g. "
                             f"image[..., :3]. Received: shape {image.shape}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise FaceInputError(f"image must be grey (H, W) or colour (H, W, 3); a batch of cropped faces goes to "
                             f"classify(). Received: shape {image.shape}")
    image = _as_uint8(image, "image")
    if image.ndim == 3 and channels == "rgb":
        image = np.ascontiguousarray(image[:, :, ::-1])
    return image


def as_face_batch(faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Already cropped faces as the uint8 (N, 48, 48) batch the models take.

    Args:
        faces: (N, 48, 48) or (N, 48, 48, 1) grey faces, one (48, 48) face, or a list of them; uint8,
            or integers / floats within [0, 255]. Crops of another size are resized (area
            interpolation when shrinking); colour crops must be converted to grey first.

    Raises:
        FaceInputError: an empty batch, a shape that is not a batch of grey faces, values outside [0, 255].
    """
    import cv2

    faces = np.asarray(faces)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.ndim == 4 and faces.shape[-1] == 1:
        faces = faces[..., 0]
    if faces.size == 0 or faces.ndim != 3:
        raise FaceInputError(f"faces must be a non-empty batch of grey crops (N, H, W) (or (N, H, W, 1), or one "
                             f"(H, W) face). Received: shape {faces.shape}")
    faces = _as_uint8(faces, "faces")
    if faces.shape[1:] != (FACE_SIDE, FACE_SIDE):
        interpolation = cv2.INTER_AREA if min(faces.shape[1:]) >= FACE_SIDE else cv2.INTER_LINEAR
        faces = np.stack([cv2.resize(f, (FACE_SIDE, FACE_SIDE), interpolation=interpolation) for f in faces])
    return faces


def face_detector():
    """OpenCV's bundled frontal-face Haar cascade."""
    import cv2

    path = Path(cv2.data.haarcascades) / CASCADE_FILE
    detector = cv2.CascadeClassifier(str(path))
    if detector.empty():
        raise RuntimeError(f"{path}: OpenCV's Haar cascade could not be loaded (is opencv-python-headless intact?)")
    return detector


def square_crop(grey: np.ndarray, box: Sequence[int], margin: float = 0.0, side: int = FACE_SIDE) -> np.ndarray:
    """The square around ``box``'s centre (side ``max(w, h) * (1 + 2 * margin)``), edge-padded, as side x side.

    Args:
        grey: uint8 (H, W) photo.
        box: (x, y, w, h).
        margin: share of the box side added on each side.
        side: output side.

    Returns:
        uint8 (side, side).
    """
    import cv2

    if margin < 0:
        raise ValueError(f"margin must be non-negative. Received: margin={margin!r}")
    x, y, w, h = (int(v) for v in box)
    size = max(1, int(round(max(w, h) * (1.0 + 2.0 * margin))))
    x0, y0 = x + w // 2 - size // 2, y + h // 2 - size // 2
    height, width = grey.shape[:2]
    pad = max(0, -x0, -y0, x0 + size - width, y0 + size - height)
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = grey[y0 : y0 + size, x0 : x0 + size]
    interpolation = cv2.INTER_AREA if size >= side else cv2.INTER_LINEAR
    return cv2.resize(crop, (side, side), interpolation=interpolation)


def find_faces(image: np.ndarray, detector=None, min_size: int = 30, scale_factor: float = 1.1,
               min_neighbors: int = 5, margin: float = 0.0, detect_max_side: int = 0) -> list[Face]:
    """Faces of a BGR (or grey) photo, left to right, each with its 48x48 grey crop.

    Args:
        image: BGR (H, W, 3) or grey (H, W) uint8 photo.
        detector: a ``cv2.CascadeClassifier`` (default: ``face_detector()``).
        min_size: smallest face side searched, in pixels of the photo.
        scale_factor: the cascade's ``scaleFactor``.
        min_neighbors: the cascade's ``minNeighbors``.
        margin: share of the box side added on each side of the crop.
        detect_max_side: when positive and the photo is larger, detect on a copy shrunk to this
            longest side (much faster); boxes are mapped back and crops taken from the full photo.

    Returns:
        The faces, sorted by box position.
    """
    import cv2

    detector = detector if detector is not None else face_detector()
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = 1.0
    small = grey
    if detect_max_side > 0 and max(grey.shape) > detect_max_side:
        scale = detect_max_side / max(grey.shape)
        small = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    side = max(1, round(min_size * scale))
    boxes = detector.detectMultiScale(small, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                      minSize=(side, side))
    boxes = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(boxes).reshape(-1, 4)]
    boxes.sort(key=lambda b: (b[0], b[1]))
    return [Face(b, square_crop(grey, b, margin)) for b in boxes]



def annotation_paths(out: str | Path, images: Sequence[str | Path]) -> list[Path]:
    """Where ``--annotate OUT`` writes each photo: OUT itself for one photo, else ``OUT-<photo name>``."""
    out = Path(out)
    if len(images) == 1:
        return [out]
    paths, seen = [], set()
    for i, image in enumerate(images):
        p = out.with_name(f"{out.stem}-{Path(image).stem}{out.suffix}")
        if p in seen:
            p = out.with_name(f"{out.stem}-{Path(image).stem}-{i + 1}{out.suffix}")
        seen.add(p)
        paths.append(p)
    return paths
