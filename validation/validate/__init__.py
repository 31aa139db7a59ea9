"""``ffkit validate``: judge a whole model set against a reference set, stage by stage, where
the user looks (torch-free: imports recipes and runtime only).

- :mod:`.sets`: the reference and candidate sets (precisions of one folder, a per-role mix, or
  another folder);
- :mod:`.engine`: the frames streamed through every set (interleaved, timed);
- :mod:`.stages`: each stage judged isolated and chained; :mod:`.image_metrics`: the figures
  (PSNR, SSIM, NME, cosine, ...);
- :mod:`.budgets`, :mod:`.summary`: the budgets and the verdict;
- :mod:`.reporting`, :mod:`.report_files`, :mod:`.report_html`: the table, report.json,
  report.html, report.png and the contact sheets.
"""
