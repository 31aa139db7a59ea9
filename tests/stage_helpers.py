"""Helpers shared by the stage tests (and the budget measurements): synthetic calibration images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_images(folder: Path, count: int, seed: int = 0, sizes=((96, 80), (120, 96), (72, 112)),
                 formats=("jpg", "png", "webp")) -> list[Path]:
    """``count`` small synthetic photos (gradient, shapes, a face-like ellipse, noise) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.empty((h, w, 3), np.float32)
        for c in range(3):
            a, b, d = rng.uniform(-1, 1, 3)
            img[..., c] = 128 + 90 * np.sin(a * xx / w * 6 + b * yy / h * 6 + d * 3)
        centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
        cv2.ellipse(img, centre, (w // 5, h // 4), 0, 0, 360, tuple(float(v) for v in rng.uniform(60, 220, 3)), -1)
        cv2.rectangle(img, (int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))),
                      (int(rng.integers(w // 2, w)), int(rng.integers(h // 2, h))),
                      tuple(float(v) for v in rng.uniform(0, 255, 3)), 2)
        img += rng.normal(0, 12, img.shape)
        path = folder / f"img{i:03d}.{formats[i % len(formats)]}"
        cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths
