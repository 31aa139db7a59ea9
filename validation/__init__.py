"""Checking what artifacts compute: the one parity routine (:mod:`.parity`), metrics, calibration
readers, FLOP counts, report tables and PNGs, and the synthetic weights and media the tests and
the demo use. Imports :mod:`ffkit.recipes` and :mod:`ffkit.runtime` only."""
