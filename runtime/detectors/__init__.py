"""Face-detector families on the detector interface, and the one table that picks among them.

``FAMILIES`` maps the ``decoder`` name a recipe declares (``Recipe.detector_decode.decoder``) to
its :class:`~ffkit.runtime.detection.FaceDetector` implementation. A new family is one module in
this package (a ``FaceDetector`` subclass: ``size`` and ``decode``, and ``normalise`` or
``suppress`` where the recipe's pixel format or ``py_cpu_nms`` does not fit) plus one entry
here, and its recipe (or adoption entry) declaring ``detector_decode``. Every caller opens a
detector with :func:`open_detector`.
"""

from __future__ import annotations

from typing import Mapping

from ffkit.recipes.errors import FfkitError
from ffkit.recipes.spec import Recipe

from ..detection import FaceDetector
from .retinaface import RetinaFaceDetector
from .scrfd import SCRFDDetector
from .yoloface import YOLOFaceDetector

__all__ = ["FAMILIES", "open_detector"]

#: decoder name -> implementation.
FAMILIES: dict[str, type[FaceDetector]] = {
    "retinaface": RetinaFaceDetector,
    "scrfd": SCRFDDetector,
    "yoloface": YOLOFaceDetector,
}


def open_detector(model, session, families: Mapping[str, type[FaceDetector]] | None = None) -> FaceDetector:
    """The detector for ``model`` running on ``session``.

    Args:
        model: a :class:`~ffkit.recipes.spec.Recipe`, or anything with ``.recipe`` (and
            ``.path``, named in errors) such as :class:`~ffkit.runtime.models.ModelRef`.
        session: the onnxruntime session of that file (None: a detector that only decodes).
        families: the table to look the decoder up in (:data:`FAMILIES` by default).

    Raises:
        FfkitError: the recipe declares no detector decode, or one no family implements, or the
            family refuses the file: one line naming the file (or the recipe).
    """
    recipe: Recipe = getattr(model, "recipe", model)
    where = str(getattr(model, "path", recipe.name))
    table = FAMILIES if families is None else families
    spec = recipe.detector_decode
    if recipe.role != "detector" or spec is None:
        raise FfkitError(f"{where}: {recipe.name} is not a face detector (role {recipe.role})")
    if spec.decoder not in table:
        raise FfkitError(f"{where}: no detector decodes {spec.decoder!r} outputs "
                         f"(known: {', '.join(sorted(table))})")
    try:
        return table[spec.decoder](session, recipe)
    except FfkitError as error:          # a family refusing the file (e.g. SCRFD without key points)
        raise FfkitError(f"{where}: {error}") from None
