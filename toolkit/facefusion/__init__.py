"""A FaceFusion-ready model folder: ffkit's artifacts under FaceFusion 3.x's slot names.

:mod:`.slots` says which FaceFusion model slot each ffkit recipe fills (and which it cannot),
:mod:`.hashes` writes FaceFusion's ``.hash`` files, :mod:`.wrappers` adapts a file's I/O to the
slot's where they differ (in the graph, never by editing ffkit's artifact), :mod:`.decode`
transcribes FaceFusion's own decodes, :mod:`.checks` holds each wrapper to them, and
:mod:`.package` writes the folder (``ffkit package --for facefusion``). See docs/facefusion.md.
"""
