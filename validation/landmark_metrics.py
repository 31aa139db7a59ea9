"""A landmarker's heatmaps compared where the user looks: the points they decode to (numpy only).

Both sides' heatmaps are decoded as face_alignment's ``get_preds_fromhm`` does
(:func:`ffkit.runtime.landmarker.decode_heatmaps`: first argmax, +-0.25 px toward the larger
neighbour); a point's error is its distance from the reference's point in heatmap pixels divided
by the heatmap width, i.e. a fraction of the face crop's side (the normalised mean error of face
alignment benchmarks, normalised by the crop instead of the eye distance, which random weights
do not give). The figures, added to the heatmap output's raw ones by
:func:`ffkit.validation.parity.judge` for a ``landmarker`` recipe:

- ``landmark_nme``: the mean error over every point of every face of every run (lower is better;
  an :class:`~ffkit.recipes.spec.AccuracyBudget` metric);
- ``landmark_worst``: the largest single error;
- ``landmark_moved``: the share of points that moved by more than one heatmap pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from ffkit.recipes.spec import Recipe
from ffkit.runtime.landmarker import decode_heatmaps

__all__ = ["point_errors", "landmark_figures", "add_landmark_figures"]


def point_errors(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per point, the decoded distance over the heatmap width: ``N x K`` heatmaps ``N x K x H x W``
    in, ``N x K`` float64 out (NaN where either side is not finite)."""
    c = np.asarray(candidate, dtype=np.float32)
    r = np.asarray(reference, dtype=np.float32)
    if c.shape != r.shape or c.ndim != 4:
        raise ValueError(f"heatmaps must be two N x K x H x W arrays of one shape, got {c.shape} and {r.shape}")
    pc, _ = decode_heatmaps(c)
    pr, _ = decode_heatmaps(r)
    return np.linalg.norm(pc.astype(np.float64) - pr.astype(np.float64), axis=-1) / r.shape[-1]


def landmark_figures(candidates: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> dict[str, float]:
    """``landmark_nme``, ``landmark_worst`` and ``landmark_moved`` (see the module docstring) over
    runs of heatmaps (each ``N x K x H x W``; runs may differ in ``N``)."""
    errors = np.concatenate([point_errors(c, r).ravel() for c, r in zip(candidates, references, strict=True)])
    width = np.shape(references[0])[-1]
    return {"landmark_nme": float(np.mean(errors)), "landmark_worst": float(np.max(errors)),
            "landmark_moved": float(np.mean(errors > 1.0 / width))}


def add_landmark_figures(recipe: Recipe, figures: MutableMapping[str, dict[str, float]],
                         candidates: Sequence[Mapping[str, np.ndarray]],
                         references: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Extend ``figures[heatmaps]`` (the recipe's first output) with :func:`landmark_figures`."""
    name = recipe.output_names[0]
    if name in figures:
        with np.errstate(invalid="ignore"):
            figures[name].update(landmark_figures([c[name] for c in candidates], [r[name] for r in references]))
