"""HTML reports of training runs (``tufl report``; the demo writes its report with it).

The layout: :mod:`~tufl.report.build` reads run folders (:mod:`~tufl.report.runs`) and
predicts sample images (:mod:`~tufl.report.samples`); :mod:`~tufl.report.writer` writes
the figures (:mod:`~tufl.report.figures`, drawn by :mod:`~tufl.report.charts`), the
``summary.json`` and the page (:mod:`~tufl.report.page`, template ``report.html``).
"""
