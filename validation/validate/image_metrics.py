"""The figures ``ffkit validate`` reports, in numpy (torch-free).

Conventions (every function documents its own):

- images are ``H x W x 3`` uint8 **BGR** (as :mod:`ffkit.runtime.media` gives them);
- :func:`psnr_u8`: ``10 log10(255^2 / MSE)`` over every pixel and channel, dB; ``inf`` when equal;
- :func:`ssim`: Wang et al. 2004 SSIM on the **luma** (BT.601 ``Y = 0.299 R + 0.587 G + 0.114 B``,
  float64, range 0..255): 11 x 11 Gaussian window with sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
  ``L = 255``, computed over the "valid" windows only (no padding) and averaged; 1.0 when equal;
  images smaller than 11 pixels on a side use a window of their shorter side;
- :func:`nme`: mean point distance over the reference's inter-ocular distance (5 points: the two
  eye centres, indices 0 and 1; 68 points: the outer eye corners, indices 36 and 45);
- boxes ``[x1, y1, x2, y2]``, IoU on continuous coordinates
  (:func:`ffkit.validation.face_metrics.box_iou`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr_u8", "ssim", "luma", "gaussian_window", "nme", "inter_ocular", "cosine", "label_agreement",
           "mask_iou"]

SSIM_SIGMA = 1.5
SSIM_SIZE = 11
SSIM_K1, SSIM_K2, SSIM_L = 0.01, 0.03, 255.0


def psnr_u8(candidate: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of one shape (peak 255); ``inf`` when identical."""
    c, r = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
    if c.shape != r.shape:
        raise ValueError(f"shape mismatch: {c.shape} vs {r.shape}")
    mse = float(np.mean((c - r) ** 2)) if c.size else 0.0
    return math.inf if mse == 0.0 else 10.0 * math.log10(255.0 ** 2 / mse)


def luma(image: np.ndarray) -> np.ndarray:
    """``H x W`` float64 BT.601 luma of an ``H x W x 3`` BGR image (a 2-D image is returned as float64)."""
    x = np.asarray(image, np.float64)
    if x.ndim == 2:
        return x
    return 0.114 * x[..., 0] + 0.587 * x[..., 1] + 0.299 * x[..., 2]


def gaussian_window(size: int = SSIM_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of ``size`` taps (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of 2-D ``x`` with ``g`` along both axes."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = sliding_window_view(x, len(g), axis=0) @ g
    return sliding_window_view(x, len(g), axis=1) @ g


def ssim(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Mean SSIM of the luma of two images of one shape (see the module docstring); 1.0 when equal."""
    a, b = luma(candidate), luma(reference)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if np.array_equal(a, b):
        return 1.0
    size = min(SSIM_SIZE, *a.shape)
    g = gaussian_window(size, SSIM_SIGMA)
    c1, c2 = (SSIM_K1 * SSIM_L) ** 2, (SSIM_K2 * SSIM_L) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(np.mean(ssim_map))


def inter_ocular(points: np.ndarray) -> float:
    """Inter-ocular distance of 5 (eye centres 0, 1) or 68 points (outer eye corners 36, 45)."""
    p = np.asarray(points, np.float64)
    i, j = (36, 45) if len(p) == 68 else (0, 1)
    return float(np.linalg.norm(p[i] - p[j]))


def nme(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance of the candidate's points from the reference's (``K x 2`` each, K = 5 or 68)
    over the reference's :func:`inter_ocular` distance (``inf`` when that is 0)."""
    c, r = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
    d = inter_ocular(r)
    return float(np.mean(np.linalg.norm(c - r, axis=1))) / d if d > 0 else math.inf


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (flattened, float64); exactly 1 for equal vectors, 0 for one zero vector."""
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if np.array_equal(x, y):
        return 1.0
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float(np.dot(x, y) / (nx * ny))


def label_agreement(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Share of pixels (0..1) where two label maps of one shape agree."""
    return float(np.mean(np.asarray(candidate) == np.asarray(reference)))


def mask_iou(candidate: np.ndarray, reference: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    c, r = np.asarray(candidate, bool), np.asarray(reference, bool)
    union = int(np.count_nonzero(c | r))
    return 1.0 if union == 0 else int(np.count_nonzero(c & r)) / union
