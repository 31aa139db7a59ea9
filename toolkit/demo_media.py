"""The demo's pictures: the bundled public-domain photo, and the SYNTHETIC-labelled sheets
``ffkit demo`` writes beside its results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ffkit.recipes.errors import FfkitError

from .demo_models import DETECTOR, TRAINED_TAG, weights_tag

ASSETS = Path(__file__).resolve().parent.parent / "validation" / "assets"


def asset_photo() -> Path:
    """The bundled public-domain photo (NASA portrait of Eileen Collins, via scikit-image)."""
    try:
        from importlib.resources import files

        path = Path(str(files("ffkit.validation") / "assets" / "astronaut.jpg"))
        if path.is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    path = ASSETS / "astronaut.jpg"
    if not path.is_file():
        raise FfkitError(f"{path}: the bundled demo photo is missing (reinstall ffkit)")
    return path


def banner(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` under a 28-pixel bar that reads ``text`` (BGR uint8)."""
    import cv2

    bar = np.full((28, image.shape[1], 3), (32, 32, 160), np.uint8)
    cv2.putText(bar, text, (8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def side_by_side(target: np.ndarray, faces, swapped: np.ndarray) -> np.ndarray:
    """``[target with the swapped faces' boxes (green) and changed regions (orange) | swapped]``
    under a SYNTHETIC banner; BGR uint8. ``faces`` are the :class:`FaceRecord` s of the swap."""
    import cv2

    left = target.copy()
    for face in faces:
        if face.swapped:
            x1, y1, x2, y2 = (int(round(v)) for v in face.box)
            cv2.rectangle(left, (x1, y1), (x2, y2), (0, 255, 0), 2)
            for x0, y0, x1r, y1r in face.regions:
                cv2.rectangle(left, (x0, y0), (x1r - 1, y1r - 1), (0, 200, 255), 1)
    gap = np.full((target.shape[0], 8, 3), 255, np.uint8)
    what = ("trained detector, SYNTHETIC swap weights" if weights_tag(DETECTOR) == TRAINED_TAG else
            "SYNTHETIC untrained weights: arbitrary boxes")
    return banner(np.hstack([left, gap, swapped]), f"ffkit demo - {what}, not a real face swap")
