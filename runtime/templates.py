"""Face templates and the per-model alignment policy.

Its one job is to say *where* each model wants the five landmarks: the template
point sets (ArcFace, SimSwap's pose set, FFHQ), the template names a recipe can
record (:data:`TEMPLATES`, :func:`template_for_size`) and, per model family,
which template and estimator give its frame -> crop matrix
(:func:`arcface_norm_matrix`, :func:`simswap_norm_matrix`,
:func:`gfpgan_norm_matrix`, :func:`norm_matrix`). The estimators and the
warping themselves are :mod:`ffkit.runtime.geometry`; its conventions (BGR
uint8 images, ``(x, y)`` points, landmark order, frame -> crop ``(2, 3)``
matrices) hold here too.

Which template / estimator each original uses
---------------------------------------------
* insightface (ArcFace recognition 112, inswapper 128; ReSwapper copies the
  same ``face_align.py``): ``estimate_norm`` in
  ``python-package/insightface/utils/face_align.py`` = skimage
  ``SimilarityTransform.estimate`` (Umeyama least squares) from the landmarks
  to ``arcface_dst * ratio`` (+ ``8 * ratio`` on x for 128-multiples). Here:
  :func:`arcface_norm_matrix` / :func:`arcface_template` +
  :func:`ffkit.runtime.geometry.estimate_similarity`.
* SimSwap (``insightface_func/utils/face_align_ffhqandnewarc.py``,
  ``face_detect_crop_single.py``, ``test_wholeimage_swapsingle.py``):
  crop 224 uses ``mode='None'`` (the "newarc" branch): the five legacy
  insightface pose templates (``src1..src5``) scaled by ``crop/112``, Umeyama
  for each, keeping the one with the smallest summed point error. Crop 512
  uses ``mode='ffhq'``: the single FFHQ template scaled by ``crop/512``, also
  Umeyama. Here: :func:`simswap_norm_matrix`.
* GFPGAN (facexlib ``FaceRestoreHelper``, ``face_size=512``,
  ``template_3points=False``): the FFHQ 512 template, matrix from
  ``cv2.estimateAffinePartial2D(landmarks, template, method=cv2.LMEDS)``
  (robust LMedS + refinement, *not* Umeyama), warped with a gray border
  ``(135, 133, 132)``. Here: :func:`gfpgan_norm_matrix` +
  :data:`GFPGAN_BORDER_VALUE`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .geometry import estimate_best_similarity, estimate_similarity, estimate_similarity_lmeds

__all__ = [
    "ARCFACE_112_TEMPLATE",
    "LEGACY_MULTIPOSE_112_TEMPLATES",
    "FFHQ_512_TEMPLATE",
    "GFPGAN_BORDER_VALUE",
    "arcface_template",
    "simswap_templates",
    "ffhq_template",
    "arcface_norm_matrix",
    "simswap_norm_matrix",
    "gfpgan_norm_matrix",
    "TEMPLATES",
    "template_for_size",
    "norm_matrix",
]

# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------

#: ArcFace 112x112 five-point template (``arcface_dst`` in insightface
#: ``python-package/insightface/utils/face_align.py``). float32 like the original.
ARCFACE_112_TEMPLATE = np.array(
    [[38.2946, 51.6963],
     [73.5318, 51.5014],
     [56.0252, 71.7366],
     [41.5493, 92.3655],
     [70.7299, 92.2041]], dtype=np.float32)
ARCFACE_112_TEMPLATE.setflags(write=False)

#: The five pose-specific 112x112 templates of the legacy insightface
#: ``face_align.py`` (``src1`` left profile, ``src2`` left, ``src3`` frontal,
#: ``src4`` right, ``src5`` right profile), kept verbatim by SimSwap's
#: ``face_align_ffhqandnewarc.py`` as ``src_map`` and used for its 224 crops
#: (``mode='None'`` / "newarc"). Shape ``(5, 5, 2)``, float32.
LEGACY_MULTIPOSE_112_TEMPLATES = np.array([
    [[51.642, 50.115], [57.617, 49.990], [35.740, 69.007],
     [51.157, 89.050], [57.025, 89.702]],
    [[45.031, 50.118], [65.568, 50.872], [39.677, 68.111],
     [45.177, 86.190], [64.246, 86.758]],
    [[39.730, 51.138], [72.270, 51.138], [56.000, 68.493],
     [42.463, 87.010], [69.537, 87.010]],
    [[46.845, 50.872], [67.382, 50.118], [72.737, 68.111],
     [48.167, 86.758], [67.236, 86.190]],
    [[54.796, 49.990], [60.771, 50.115], [76.673, 69.007],
     [55.388, 89.702], [61.257, 89.050]],
], dtype=np.float32)
LEGACY_MULTIPOSE_112_TEMPLATES.setflags(write=False)

#: FFHQ 512x512 five-point template: facexlib ``FaceRestoreHelper.face_template``
#: (GFPGAN, ``template_3points=False``) and SimSwap's ``ffhq_src`` (512 crops).
#: float64 like both originals.
FFHQ_512_TEMPLATE = np.array(
    [[192.98138, 239.94708],
     [318.90277, 240.1936],
     [256.63416, 314.01935],
     [201.26117, 371.41043],
     [313.08905, 371.15118]], dtype=np.float64)
FFHQ_512_TEMPLATE.setflags(write=False)

#: ``borderValue`` facexlib uses when warping crops for GFPGAN (BGR gray).
GFPGAN_BORDER_VALUE: Tuple[int, int, int] = (135, 133, 132)


def arcface_template(image_size: int) -> np.ndarray:
    """Destination points of insightface ``estimate_norm`` for a square crop.

    ``image_size`` must be a multiple of 112 (ratio ``size/112``, no shift) or
    of 128 (ratio ``size/128`` and x shifted by ``8 * ratio``); 112-multiples
    are checked first, as in insightface. inswapper_128 uses 128, i.e. the
    112 template shifted by +8 px in x.

    Returns:
        ``(5, 2)`` float32 ``(x, y)`` crop-pixel coordinates.
    """
    image_size = int(image_size)
    if image_size % 112 == 0:
        ratio = float(image_size) / 112.0
        diff_x = 0.0
    elif image_size % 128 == 0:
        ratio = float(image_size) / 128.0
        diff_x = 8.0 * ratio
    else:
        raise ValueError(f"arcface template needs a multiple of 112 or 128, got {image_size}")
    dst = ARCFACE_112_TEMPLATE * np.float32(ratio)
    dst[:, 0] += np.float32(diff_x)
    return dst


def simswap_templates(crop_size: int, mode: str) -> np.ndarray:
    """Candidate templates of SimSwap's ``estimate_norm`` for ``crop_size``.

    Args:
        crop_size: output crop side (224 or 512 in SimSwap).
        mode: ``'ffhq'`` (SimSwap 512) -> the FFHQ template times
            ``crop_size / 512``; anything else (SimSwap passes ``'None'`` for
            224, a.k.a. "newarc") -> the five legacy pose templates times
            ``crop_size / 112``.

    Returns:
        ``(N, 5, 2)`` template stack (N = 1 or 5).
    """
    if mode == "ffhq":
        return (FFHQ_512_TEMPLATE * crop_size / 512)[None]
    return LEGACY_MULTIPOSE_112_TEMPLATES * np.float32(crop_size) / np.float32(112)


def ffhq_template(face_size: int = 512) -> np.ndarray:
    """facexlib's FFHQ template for a ``face_size`` crop (``crop_ratio=(1, 1)``).

    Returns:
        ``(5, 2)`` float64, ``FFHQ_512_TEMPLATE * face_size / 512``.
    """
    return FFHQ_512_TEMPLATE * (face_size / 512.0)


# --------------------------------------------------------------------------
# Per-model matrices
# --------------------------------------------------------------------------

def arcface_norm_matrix(landmarks: np.ndarray, image_size: int) -> np.ndarray:
    """insightface ``estimate_norm(lmk, image_size)``: frame -> crop matrix.

    Use 112 for ArcFace recognition crops, 128 for inswapper_128.

    Args:
        landmarks: ``(5, 2)`` frame landmarks (pixels).
        image_size: crop side, a multiple of 112 or 128.

    Returns:
        ``(2, 3)`` float64 matrix.
    """
    return estimate_similarity(landmarks, arcface_template(image_size))


def simswap_norm_matrix(landmarks: np.ndarray, crop_size: int,
                        mode: Optional[str] = None) -> Tuple[np.ndarray, int]:
    """SimSwap ``estimate_norm(lmk, crop_size, mode)``: frame -> crop matrix.

    Args:
        landmarks: ``(5, 2)`` frame landmarks (pixels).
        crop_size: 224 or 512 (any size works).
        mode: ``'ffhq'`` or ``'None'``; default as SimSwap's test scripts
            choose it: ``'ffhq'`` for 512, ``'None'`` otherwise.

    Returns:
        ``((2, 3) float64 matrix, chosen template index)``.
    """
    if mode is None:
        mode = "ffhq" if int(crop_size) == 512 else "None"
    return estimate_best_similarity(landmarks, simswap_templates(crop_size, mode))


def gfpgan_norm_matrix(landmarks: np.ndarray, face_size: int = 512) -> np.ndarray:
    """facexlib/GFPGAN alignment matrix (LMedS partial affine to the FFHQ template).

    Returns:
        ``(2, 3)`` float64 frame -> crop matrix. Warp with
        ``warp_face(frame, M, face_size, border_value=GFPGAN_BORDER_VALUE)``.
    """
    return estimate_similarity_lmeds(landmarks, ffhq_template(face_size))


#: Template names a recipe can record (``Recipe.template``) and what they align to.
TEMPLATES = ("arcface_112", "arcface_128", "simswap_224", "ffhq_512")


def template_for_size(size: int) -> str:
    """The template a crop of ``size`` pixels usually means: 112 -> ``arcface_112`` (ArcFace),
    128 -> ``arcface_128`` (inswapper), 224 -> ``simswap_224``, 512 -> ``ffhq_512``; other
    multiples of 112/128 -> the ArcFace template scaled."""
    size = int(size)
    named = {112: "arcface_112", 128: "arcface_128", 224: "simswap_224", 512: "ffhq_512"}
    if size in named:
        return named[size]
    if size % 112 == 0:
        return "arcface_112"
    if size % 128 == 0:
        return "arcface_128"
    raise ValueError(f"no default template for a {size} px crop (use a multiple of 112 or 128)")


def norm_matrix(template: str, landmarks: np.ndarray, size: int, *, lmeds: bool = False) -> np.ndarray:
    """Frame -> crop matrix aligning ``landmarks`` to the named template at ``size`` pixels.

    Args:
        template: ``arcface_112`` / ``arcface_128`` (insightface ``estimate_norm``; the
            name fixes the template family, ``size`` the scale), ``simswap_224`` (SimSwap's
            five pose templates, best fit), ``ffhq_512`` (FFHQ template; Umeyama as SimSwap
            512, or LMedS as facexlib/GFPGAN when ``lmeds``).
        landmarks: ``(5, 2)`` frame landmarks in pixels.
        size: crop side in pixels.

    Returns:
        ``(2, 3)`` float64 matrix for :func:`warp_face`.
    """
    if template in ("arcface_112", "arcface_128"):
        base = 112 if template == "arcface_112" else 128
        if size % base:
            raise ValueError(f"template {template} needs a crop size multiple of {base}, got {size}")
        if base == 112 or size % 112:  # insightface's own rule picks this family at this size
            dst = arcface_template(size)
        else:  # e.g. arcface_128 at 896 (also a multiple of 112): scale the 128 template
            dst = arcface_template(128) * np.float32(size / 128)
        return estimate_similarity(landmarks, dst)
    if template == "simswap_224":
        return simswap_norm_matrix(landmarks, size, mode="None")[0]
    if template == "ffhq_512":
        if lmeds:
            return gfpgan_norm_matrix(landmarks, size)
        return simswap_norm_matrix(landmarks, size, mode="ffhq")[0]
    raise ValueError(f"unknown template {template!r} (known: {', '.join(TEMPLATES)})")

