"""The roles a model plays in a swap: one table, read by the model picker, ``ffkit swap`` and serve.

Each :class:`RoleSpec` says whether every swap needs the role, which swap option asks for it
(and with which value), the preference order among the recipes that fill it, and the words of
the error when a models folder lacks it. Which recipes fill a role is not listed here: it is
every registered recipe whose ``Recipe.role`` is the role (:meth:`RoleSpec.recipes`), so a new
recipe of an existing role needs no edit of this table (besides, if it should win, its place in
``preference``). Torch-free plain data; importing it imports no other module of ffkit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

__all__ = ["RoleSpec", "ROLE_TABLE", "ROLE_NAMES", "ANY", "role_spec"]

#: ``RoleSpec.when`` meaning "any value that is set" (not None, not False).
ANY = "<any value>"


@dataclass(frozen=True)
class RoleSpec:
    """One role of the pipeline.

    Attributes:
        name: the role (``Recipe.role`` of the recipes that fill it).
        what: what a model of this role does, in a few words.
        required: every swap needs it (picked whatever the options).
        option: the swap option (field name, e.g. ``landmarks``) that asks for this optional
            role, or None.
        when: the value of ``option`` that asks for it: for a list option, a member of the list;
            :data:`ANY` for any value that is set; else the value itself.
        preference: recipe names, best first, when a folder holds several of the role (recipes
            not listed rank after these).
        also: a note on when the role is picked besides ``option`` (shown in help), or ''.
    """

    name: str
    what: str
    required: bool = False
    option: Optional[str] = None
    when: Any = True
    preference: tuple[str, ...] = ()
    also: str = ""

    def asks(self, values: Mapping[str, Any]) -> bool:
        """Whether the option values ``values`` (field name -> value) ask for this role."""
        if self.option is None:
            return False
        value = values.get(self.option)
        if isinstance(value, (tuple, list, frozenset, set)):
            return self.when in value
        if self.when == ANY:
            return value is not None and value is not False
        return value == self.when

    @property
    def asked_by(self) -> str:
        """How a user asks for it, as a CLI option (``--landmarks 68``), or '' when required."""
        if self.option is None:
            return ""
        flag = "--" + self.option.replace("_", "-")
        return flag if self.when in (True, ANY) else f"{flag} {self.when}"

    def recipes(self, registry: Mapping[str, Any]) -> tuple[str, ...]:
        """The recipes of ``registry`` (name -> Recipe) that fill this role, preferred first."""
        names = [name for name, recipe in registry.items() if recipe.role == self.name]
        order = {name: i for i, name in enumerate(self.preference)}
        return tuple(sorted(names, key=lambda n: order.get(n, len(order))))

    def missing(self, recipes: Iterable[str]) -> str:
        """The error words for a models folder without this role, given the recipes that fill it."""
        return f"no {self.name} artifact ({', '.join(recipes)})"


#: Every role, in pipeline order (``ModelSelection.used()`` and ``/health`` list them so).
ROLE_TABLE: Mapping[str, RoleSpec] = {spec.name: spec for spec in (
    RoleSpec("detector", "faces: boxes, scores and 5 landmarks", required=True,
             preference=("retinaface_resnet50", "retinaface_mobilenet0.25", "scrfd_10g", "scrfd_2.5g",
                         "scrfd_500m", "scrfd", "scrfd_10g_batched", "scrfd_2.5g_batched", "scrfd_500m_batched",
                         "scrfd_batched", "scrfd_5s", "scrfd_5s_batched", "yoloface_8n")),
    RoleSpec("landmarker", "68 landmarks of a face", option="landmarks", when=68, preference=("fan_2dfan4",)),
    RoleSpec("embedder", "identity vector of a face", required=True,
             preference=("arcface_iresnet100", "arcface_iresnet50", "arcface_iresnet18", "simswap_arcface")),
    RoleSpec("swapper", "the swapped face", required=True,
             preference=("inswapper_128", "simswap_512", "simswap_224")),
    RoleSpec("enhancer", "face restoration on the aligned crop", option="enhance", when=True,
             preference=("gfpgan_v1.4",)),
    RoleSpec("parser", "per-pixel face regions", option="mask", when="region", preference=("bisenet_faceparsing",),
             also="with --enhance when the folder has one (the restore is pasted inside the face)"),
    RoleSpec("frame_enhancer", "whole-frame super-resolution", option="frame_enhance", when=ANY,
             preference=("realesrgan_x4plus", "realesrgan_x2plus")),
)}

#: The role names, in pipeline order (``Recipe.role`` is one of these).
ROLE_NAMES: tuple[str, ...] = tuple(ROLE_TABLE)


def role_spec(name: str) -> RoleSpec:
    """The :class:`RoleSpec` of role ``name`` (KeyError for an unknown role: a programming error)."""
    return ROLE_TABLE[name]
