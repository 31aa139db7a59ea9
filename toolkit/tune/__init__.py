"""``ffkit tune``: the fastest model set whose swaps stay within ``ffkit validate``'s budgets.

- :mod:`.cache`: every candidate file, timing and judgement cached by content;
- :mod:`.candidates`: per role FP32 (as given, optimized), FP16, INT8 and INT8 with nodes kept
  in float, built by the stages (:mod:`ffkit.toolkit.fp16`, :mod:`ffkit.toolkit.int8`, ...);
- :mod:`.fallback`: the float fallback ranked by the end-to-end error each node causes;
- :mod:`.speed`: each candidate timed by the bench harness, interleaved;
- :mod:`.judge`: sets judged by ``ffkit validate``'s engine and budgets (isolated and chained);
- :mod:`.search`: greedy by speed gained per accuracy spent, or exhaustive when few;
- :mod:`.output`: the chosen files, ``set.json`` and the reports; :mod:`.run`: the whole run.
"""
