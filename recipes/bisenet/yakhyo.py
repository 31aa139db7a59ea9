"""yakhyo/face-parsing's spelling of the BiSeNet ResNet-18 state_dict, mapped to ours. Torch-free.

yakhyo's ``resnet18.pt`` (the source of FaceFusion's ``bisenet_resnet_18``) is a retrained model
of the same network with renamed modules (the manifest's ``checkpoint_layout_note``):
``cp.resnet.`` -> ``fpn.backbone.``, ``cp.`` -> ``fpn.``, ARM ``conv_atten``/``bn_atten`` ->
``attention.0``/``attention.1``, ARM ``conv`` / FFM ``convblk`` / head ``conv`` -> ``conv_block``,
head ``conv_out`` -> ``conv``, and BatchNorm ``bn`` -> ``norm`` inside every ConvBNReLU. Its
file also keeps the unused ImageNet classifier ``fpn.backbone.fc.*``. ResNet internals keep
their names. yakhyo's ResNet-34 variant is another network and does not fit this recipe.
"""

from __future__ import annotations

import re
from typing import Mapping, TypeVar

__all__ = ["YAKHYO_TO_ZLL", "UNUSED_YAKHYO_KEYS", "is_yakhyo_layout", "from_yakhyo"]

T = TypeVar("T")

#: Applied in this order to every yakhyo key (each rule at most once): the inverse of the
#: manifest's zll -> yakhyo map. The head's ``conv`` -> ``conv_out`` comes before its
#: ``conv_block`` -> ``conv``, so the two never collide.
YAKHYO_TO_ZLL: tuple[tuple[str, str], ...] = (
    (r"^fpn\.backbone\.", "cp.resnet."),
    (r"^fpn\.", "cp."),
    (r"\.attention\.0\.", ".conv_atten."),
    (r"\.attention\.1\.", ".bn_atten."),
    (r"^cp\.(arm16|arm32)\.conv_block\.", r"cp.\1.conv."),
    (r"^ffm\.conv_block\.", "ffm.convblk."),
    (r"^(conv_out|conv_out16|conv_out32)\.conv\.", r"\1.conv_out."),
    (r"^(conv_out|conv_out16|conv_out32)\.conv_block\.", r"\1.conv."),
    (r"\.norm\.", ".bn."),
)

#: Keys of yakhyo's file that the parser does not use (ResNet-18's ImageNet classifier).
UNUSED_YAKHYO_KEYS = ("fpn.backbone.fc.weight", "fpn.backbone.fc.bias")


def is_yakhyo_layout(keys) -> bool:
    """True when the keys are yakhyo's spelling (its context path is ``fpn.``, ours ``cp.``)."""
    return any(str(k).startswith("fpn.") for k in keys)


def _rename(key: str) -> str:
    for pattern, replacement in YAKHYO_TO_ZLL:
        key = re.sub(pattern, replacement, key, count=1)
    return key


def from_yakhyo(state_dict: Mapping[str, T]) -> Mapping[str, T]:
    """The recipe's ``state_dict_adapter``: a yakhyo/face-parsing ResNet-18 state_dict with its
    keys renamed to face-parsing.PyTorch's (the recipe's) and the unused ``fc`` dropped, values
    untouched and in the file's order. A dict already in our layout is returned unchanged (the
    same object). Keys the map does not know pass through renamed as far as it goes, so strict
    loading names them."""
    if not is_yakhyo_layout(state_dict):
        return state_dict
    return {_rename(k): v for k, v in state_dict.items() if k not in UNUSED_YAKHYO_KEYS}
