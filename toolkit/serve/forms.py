"""The swap options of ``POST /swap`` and ``POST /jobs``: form fields named as ``ffkit swap``'s options.

Each field is the option without its dashes, ``-`` written ``_`` (``--max-faces 2`` ->
``max_faces=2``, ``--mask box,region`` -> ``mask=box,region``, ``--color-match`` ->
``color_match=true``), with the same default and meaning: the fields are the *request* options
of the one declaration (:data:`ffkit.runtime.swap_options.SWAP_OPTIONS`) that apply to images
(``/swap``) or to videos (``/jobs``, which also takes the video-only ``detect_every`` and
``smooth``). A value out of range or not one of the allowed ones is a 422 with the very line
``ffkit swap`` prints for it (``{"error": "--smooth / smooth: 1 is out of range, ..."}``); the
OpenAPI schema shows each field's default, range and choices. A ``reference`` upload switches to
reference matching, as ``ffkit swap --reference`` does. :func:`declaration` is the same fields as
JSON (``GET /options``): the page builds its form from it.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from fastapi import Form

from ffkit.recipes.errors import FfkitError
from ffkit.runtime.swap_options import IMAGE, VIDEO, OptionSpec, check_values, options_for

from .errors import InvalidOption

__all__ = ["SwapForm", "form_fields", "swap_form", "job_form", "declaration"]


class SwapForm(dict):
    """The checked request option values of one form (``{name: value}``, every declared option;
    ``mask`` and ``mask_regions`` already split), see :func:`~ffkit.runtime.swap_options.swap_settings`."""

    @property
    def request_values(self) -> dict[str, Any]:
        """The values of the request options only (what a job records)."""
        return {o.name: self[o.name] for o in options_for("request") if o.name in self}


def _form_param(spec: OptionSpec) -> inspect.Parameter:
    """The FastAPI form field of one declared option: its default, description, and its range and
    choices in the schema only (the declaration checks them, so the message is ``ffkit swap``'s)."""
    annotation = Optional[spec.kind] if spec.optional else spec.kind
    field = Form(spec.text_default, description=spec.help, json_schema_extra=spec.schema() or None)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=field, annotation=annotation)


def form_fields(media: str) -> tuple[OptionSpec, ...]:
    """The declared options a form for ``media`` (``image``: ``/swap``, ``video``: ``/jobs``) has."""
    return options_for("request", media)


def _dependency(media: str) -> Callable[..., SwapForm]:
    fields = form_fields(media)

    def dependency(**values) -> SwapForm:
        try:
            checked = check_values(values)
        except FfkitError as e:
            raise InvalidOption(str(e)) from None
        return SwapForm(checked)

    dependency.__signature__ = inspect.Signature([_form_param(spec) for spec in fields])
    dependency.__name__ = f"{media}_form"
    dependency.__doc__ = f"FastAPI dependency: the swap option fields of a {media} request (a bad value: 422)."
    return dependency


#: FastAPI dependencies: the fields of ``/swap`` (images) and of ``/jobs`` (videos).
swap_form = _dependency(IMAGE)
job_form = _dependency(VIDEO)


def _describe(spec: OptionSpec) -> dict[str, Any]:
    """One request option as JSON: what a form needs to show and send it (no checking: the
    server checks what is sent, so a bad value gets ``ffkit swap``'s line)."""
    return {"name": spec.name, "flag": spec.flag, "kind": spec.kind.__name__, "default": spec.text_default,
            "help": spec.help, "media": sorted(spec.media), "low": spec.low, "high": spec.high,
            "low_open": spec.low_open, "high_open": spec.high_open,
            "range": spec.range_text() if spec.low is not None or spec.high is not None else None,
            "choices": list(spec.choices) if spec.choices is not None else None, "is_list": spec.is_list,
            "optional": spec.optional, "role": spec.role.name if spec.role is not None else None}


def declaration() -> dict[str, Any]:
    """The ``GET /options`` answer: every request option of the one declaration
    (:data:`~ffkit.runtime.swap_options.SWAP_OPTIONS`), in its order, with the media it applies
    to (``/swap`` takes the ``image`` ones, ``/jobs`` the ``video`` ones)."""
    return {"options": [_describe(spec) for spec in options_for("request")],
            "fields": {"image": [s.name for s in form_fields(IMAGE)], "video": [s.name for s in form_fields(VIDEO)]}}
