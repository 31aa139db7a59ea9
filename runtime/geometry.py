"""Face geometry kernel: similarity estimation, crop warping and paste-back.

Its one job is the arithmetic of moving pixels between a frame and an aligned
crop; *which* template a model aligns to is :mod:`ffkit.runtime.templates`.
Pure numpy + OpenCV. Every function takes its parameters explicitly.

Conventions
-----------
* Images are ``(H, W, 3)`` uint8 in **BGR** order, as ``cv2.imread`` returns
  them. Nothing here converts colour; the caller does that for a model.
* Points are ``(x, y)`` pixel coordinates, x to the right, y down, with the
  OpenCV convention that pixel ``(i, j)`` has its centre at ``x=j, y=i``.
* The five landmarks are ordered left eye, right eye, nose tip, left mouth
  corner, right mouth corner, "left" meaning the smaller x in the image
  (RetinaFace / SCRFD / insightface order).
* An alignment matrix ``M`` is ``(2, 3)`` float64 mapping **frame -> crop**:
  ``crop_xy = M[:, :2] @ frame_xy + M[:, 2]``; it is what
  ``cv2.warpAffine(frame, M, (size, size))`` expects.

Estimators: :func:`estimate_similarity` (Umeyama least squares, as skimage /
insightface / SimSwap), :func:`estimate_similarity_lmeds` (OpenCV LMedS, as
facexlib / GFPGAN), :func:`estimate_best_similarity` (best of several
templates, as SimSwap 224). Warping: :func:`warp_face` (frame -> crop),
:func:`paste_back` (crop -> frame, feathered mask, insightface's scheme:
:func:`feather_paste_mask`) and :func:`paste_region` (the frame box a paste may change).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = [
    "estimate_similarity",
    "estimate_similarity_lmeds",
    "estimate_best_similarity",
    "transform_points",
    "warp_face",
    "paste_region",
    "feather_paste_mask",
    "paste_back",
]

# --------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------

def estimate_similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation + uniform scale + translation).

    The Umeyama (1991) closed form, as skimage
    ``SimilarityTransform.estimate`` computes it (``_umeyama`` with
    ``estimate_scale=True``), including its reflection handling; computed in
    float64.

    Args:
        src_pts: ``(N, 2)`` source points (e.g. frame landmarks), N >= 2.
        dst_pts: ``(N, 2)`` destination points (e.g. a template).

    Returns:
        ``(2, 3)`` float64 ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``.
        All-NaN if the source points are degenerate (rank 0).
    """
    src = np.asarray(src_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape:
        raise ValueError(f"point sets differ in shape: {src.shape} vs {dst.shape}")
    num, dim = src.shape
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_demean = src - src_mean
    dst_demean = dst - dst_mean

    a = dst_demean.T @ src_demean / num
    d = np.ones((dim,), dtype=np.float64)
    if np.linalg.det(a) < 0:
        d[dim - 1] = -1
    t = np.eye(dim + 1, dtype=np.float64)
    u, s, v = np.linalg.svd(a)
    rank = np.linalg.matrix_rank(a)
    if rank == 0:
        return np.full((2, 3), np.nan)
    if rank == dim - 1:
        if np.linalg.det(u) * np.linalg.det(v) > 0:
            t[:dim, :dim] = u @ v
        else:
            saved = d[dim - 1]
            d[dim - 1] = -1
            t[:dim, :dim] = u @ np.diag(d) @ v
            d[dim - 1] = saved
    else:
        t[:dim, :dim] = u @ np.diag(d) @ v
    scale = 1.0 / src_demean.var(axis=0).sum() * (s @ d)
    t[:dim, dim] = dst_mean - scale * (t[:dim, :dim] @ src_mean)
    t[:dim, :dim] *= scale
    return t[:2, :].copy()


def estimate_similarity_lmeds(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Similarity via ``cv2.estimateAffinePartial2D(..., method=cv2.LMEDS)``.

    This is the estimator of facexlib's ``FaceRestoreHelper.align_warp_face``
    (GFPGAN's alignment). OpenCV runs it on float32 points; its LMedS sampler
    is deterministic (fixed internal seed). For clean landmarks it agrees
    closely, not bit-exactly, with :func:`estimate_similarity`.

    Returns:
        ``(2, 3)`` float64 matrix mapping ``src_pts`` to ``dst_pts``.

    Raises:
        ValueError: if OpenCV cannot estimate a transform.
    """
    src = np.asarray(src_pts, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float32).reshape(-1, 2)
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None:
        raise ValueError("cv2.estimateAffinePartial2D failed to estimate a transform")
    return m.astype(np.float64)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to ``(..., 2)`` points; returns float64."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def estimate_best_similarity(src_pts: np.ndarray,
                             templates: np.ndarray) -> Tuple[np.ndarray, int]:
    """Umeyama fit to each template; keep the smallest summed point error.

    SimSwap's / legacy insightface ``estimate_norm`` loop: for template ``i``,
    ``error_i = sum_k || M_i src_k - template_i[k] ||``; the first minimum
    wins (strict ``<``).

    Args:
        src_pts: ``(5, 2)`` landmarks.
        templates: ``(N, 5, 2)`` (or a single ``(5, 2)``) candidate templates.

    Returns:
        ``((2, 3) float64 matrix, template index)``.
    """
    templates = np.asarray(templates)
    if templates.ndim == 2:
        templates = templates[None]
    best_m = None
    best_i = -1
    best_err = math.inf
    for i in range(templates.shape[0]):
        m = estimate_similarity(src_pts, templates[i])
        res = transform_points(src_pts, m)
        err = float(np.sum(np.sqrt(np.sum((res - templates[i]) ** 2, axis=1))))
        if err < best_err:
            best_err = err
            best_m = m
            best_i = i
    if best_m is None:
        raise ValueError("no template produced a finite fit")
    return best_m, best_i


# --------------------------------------------------------------------------
# Warping
# --------------------------------------------------------------------------

SizeLike = Union[int, Tuple[int, int]]


def _wh(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def warp_face(image: np.ndarray, matrix: np.ndarray, size: SizeLike,
              border_value: Union[float, Sequence[float]] = 0.0,
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Crop an aligned face: ``cv2.warpAffine(image, matrix, size)``.

    Args:
        image: ``(H, W, C)`` (BGR uint8 frame) or ``(H, W)``.
        matrix: ``(2, 3)`` frame -> crop matrix.
        size: crop side, or ``(width, height)``.
        border_value: constant for pixels outside the frame (0 as insightface
            and SimSwap; :data:`ffkit.runtime.templates.GFPGAN_BORDER_VALUE`
            for GFPGAN).
        interpolation: bilinear by default, as all originals.

    Returns:
        ``(height, width, C)`` array of ``image``'s dtype.
    """
    w, h = _wh(size)
    if np.isscalar(border_value):
        border = (float(border_value),) * 4
    else:
        border = tuple(float(b) for b in border_value)
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (w, h),
                          flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def _paste_roi(frame_h: int, frame_w: int, inv: np.ndarray, crop_w: int, crop_h: int,
               margin: int) -> Optional[Tuple[int, int, int, int]]:
    """Frame-pixel box ``(x0, y0, x1, y1)`` (exclusive ends) covering every pixel
    a bilinear inverse warp of a ``crop_w x crop_h`` crop can touch, plus margin."""
    corners = np.array([[-1.0, -1.0], [crop_w, -1.0], [-1.0, crop_h], [crop_w, crop_h]])
    pts = transform_points(corners, inv)
    x0 = int(math.floor(pts[:, 0].min())) - margin
    y0 = int(math.floor(pts[:, 1].min())) - margin
    x1 = int(math.ceil(pts[:, 0].max())) + margin + 1
    y1 = int(math.ceil(pts[:, 1].max())) + margin + 1
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, frame_w), min(y1, frame_h)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def paste_region(frame_shape: Sequence[int], matrix: np.ndarray, crop_size: SizeLike, *,
                 blur_radius: Optional[int] = None) -> Optional[Tuple[int, int, int, int]]:
    """The frame box :func:`paste_back` may change; every pixel outside it is left as is.

    It is the bounding box of every frame pixel a bilinear inverse warp of the
    crop can touch, widened by the blur radius (an upper bound of the one
    ``paste_back`` derives, or ``blur_radius`` when given) plus 3 pixels, and
    clipped to the frame.

    Args:
        frame_shape: ``(H, W, ...)`` of the frame.
        matrix: ``(2, 3)`` frame -> crop matrix.
        crop_size: crop side, or ``(width, height)``.
        blur_radius: as passed to ``paste_back`` (None: sized to the face).

    Returns:
        ``(x0, y0, x1, y1)`` with exclusive ends, or None if the crop maps
        entirely outside the frame.
    """
    frame_h, frame_w = int(frame_shape[0]), int(frame_shape[1])
    crop_w, crop_h = _wh(crop_size)
    inv = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    # Upper bound of the blur radius, from the warped crop's bounding box
    # (the mask extents used by the original can only be smaller).
    box = _paste_roi(frame_h, frame_w, inv, crop_w, crop_h, 0)
    if box is None:
        return None
    if blur_radius is None:
        bw, bh = box[2] - box[0], box[3] - box[1]
        r_bound = max(int(math.sqrt(bw * bh)) // 20, 5)
    else:
        r_bound = int(blur_radius)
    return _paste_roi(frame_h, frame_w, inv, crop_w, crop_h, r_bound + 3)


def feather_paste_mask(mask: np.ndarray, *, erode_size: Optional[int] = None,
                       blur_radius: Optional[int] = None) -> Optional[np.ndarray]:
    """insightface ``INSwapper.get``'s feathering of a pasted crop's mask (:func:`paste_back`'s).

    Threshold ``> 20`` -> 255, erode with a ``k x k`` box, ``k = max(s // 10, 10)``, Gaussian-blur
    with a ``(2r+1)`` kernel (OpenCV's sigma for that size), ``r = max(s // 20, 5)``, where
    ``s = int(sqrt(h * w))`` and ``h, w`` are the row/column extents (last minus first index) of
    the 255 region; divide by 255.

    Args:
        mask: ``(H, W)`` float32 in 0..255, the white crop warped into the frame with a zero
            border around it (erosion treats the array's outside as white); modified in place.
        erode_size: override ``k`` (0 disables erosion).
        blur_radius: override ``r`` (0 disables blurring).

    Returns:
        ``(H, W)`` float32 in [0, 1], or None when no pixel exceeds 20.
    """
    mask[mask > 20] = 255
    rows = np.flatnonzero((mask == 255).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((mask == 255).any(axis=0))
    mask_h = int(rows[-1] - rows[0])
    mask_w = int(cols[-1] - cols[0])
    mask_size = int(np.sqrt(mask_h * mask_w))

    k = max(mask_size // 10, 10) if erode_size is None else int(erode_size)
    if k > 0:
        mask = cv2.erode(mask, np.ones((k, k), np.uint8), iterations=1)
    r = max(mask_size // 20, 5) if blur_radius is None else int(blur_radius)
    if r > 0:
        mask = cv2.GaussianBlur(mask, (2 * r + 1, 2 * r + 1), 0)
    mask /= 255
    return mask


def paste_back(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray, *,
               erode_size: Optional[int] = None,
               blur_radius: Optional[int] = None,
               face_mask: Optional[np.ndarray] = None,
               round_output: bool = False,
               interpolation: int = cv2.INTER_LINEAR,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Blend a (swapped) face crop back into the frame with a feathered mask.

    The mask is insightface ``INSwapper.get``'s: warp a white crop back
    (threshold ``> 20`` -> 255), erode it with a ``k x k`` box, ``k =
    max(s // 10, 10)``, Gaussian-blur it with a ``(2r+1)`` kernel, ``r =
    max(s // 20, 5)``, where ``s = int(sqrt(h * w))`` and ``h, w`` are the
    row/column extents of the warped white region; then
    ``out = mask * face + (1 - mask) * frame`` truncated to uint8. (SimSwap's
    ``reverse2wholeimage`` uses the same scheme with fixed ``erode_size=40``,
    ``blur_radius=20``.)

    Unlike the originals, all work is done inside the bounding box of the
    warped crop plus a margin wider than the blur, so the result equals the
    whole-frame computation (up to OpenCV's sub-pixel rounding of the
    shifted warp) while pixels outside that box are copied untouched.

    Args:
        frame: ``(H, W, C)`` uint8 BGR frame (not modified).
        face: ``(S_h, S_w, C)`` uint8 BGR crop to paste (same channels).
        matrix: ``(2, 3)`` **frame -> crop** matrix used to cut the crop.
        erode_size: override ``k`` (0 disables erosion).
        blur_radius: override ``r`` (0 disables blurring).
        face_mask: optional ``(S_h, S_w)`` crop-space mask (float in [0, 1],
            or uint8 in [0, 255]) multiplied into the feathered mask, e.g. a
            face-parsing mask.
        round_output: round to nearest instead of truncating (insightface
            truncates with ``astype(np.uint8)``).
        interpolation: for warping the face back (bilinear as insightface).
        out: write the result into this ``(H, W, C)`` uint8 array instead of a
            new copy of ``frame``; only pixels inside :func:`paste_region` are
            written, so ``out=frame`` pastes in place.

    Returns:
        The ``(H, W, C)`` uint8 result (``out`` when given, else a new array).
    """
    if frame.dtype != np.uint8 or face.dtype != np.uint8:
        raise TypeError("paste_back expects uint8 frame and face")
    if frame.ndim != 3 or face.ndim != 3 or frame.shape[2] != face.shape[2]:
        raise ValueError(f"paste_back expects (H, W, C) frame and (S, S, C) face, "
                         f"got {frame.shape} and {face.shape}")
    frame_h, frame_w = frame.shape[:2]
    crop_h, crop_w = face.shape[:2]
    if out is None:
        out = frame.copy()
    elif out.shape != frame.shape or out.dtype != np.uint8:
        raise ValueError(f"out must be a {frame.shape} uint8 array, got {out.shape} {out.dtype}")

    inv = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    roi = paste_region(frame.shape, matrix, (crop_w, crop_h), blur_radius=blur_radius)
    if roi is None:
        return out
    x0, y0, x1, y1 = roi
    rw, rh = x1 - x0, y1 - y0

    inv_roi = inv.copy()
    inv_roi[0, 2] -= x0
    inv_roi[1, 2] -= y0

    fake = cv2.warpAffine(face, inv_roi, (rw, rh), flags=interpolation,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    white = np.full((crop_h, crop_w), 255, dtype=np.float32)
    mask = cv2.warpAffine(white, inv_roi, (rw, rh), borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0.0)
    mask = feather_paste_mask(mask, erode_size=erode_size, blur_radius=blur_radius)
    if mask is None:
        return out

    if face_mask is not None:
        fm = np.asarray(face_mask)
        fm = fm.astype(np.float32) / 255 if fm.dtype == np.uint8 else fm.astype(np.float32)
        if fm.shape[:2] != (crop_h, crop_w):
            raise ValueError(f"face_mask shape {fm.shape} does not match crop {(crop_h, crop_w)}")
        fm = cv2.warpAffine(fm.reshape(crop_h, crop_w), inv_roi, (rw, rh),
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        mask *= fm

    target = frame[y0:y1, x0:x1]
    if fake.ndim == 2:  # OpenCV drops a single channel axis
        fake = fake[:, :, None]
    m3 = mask[:, :, None]
    blended = m3 * fake.astype(np.float32) + (1 - m3) * target.astype(np.float32)
    if round_output:
        blended = np.rint(blended)
    np.clip(blended, 0, 255, out=blended)
    out[y0:y1, x0:x1] = blended.astype(np.uint8)
    return out
