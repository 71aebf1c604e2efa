"""Seeded ablation grids (``tufl ablate``): rows of config overrides, trained once per seed,
compared in one table.

The layout: :mod:`~tufl.ablation.grid` reads a grid file (rows of ``--set`` overrides);
:mod:`~tufl.ablation.plan` turns it into the runs to train (each row x seed, plus the
earlier stages a row starts from, shared between rows that train them alike) and
validates every run's config before anything trains; :mod:`~tufl.ablation.scale` adds
the built-in demo data and schedule (``--scale demo``); :mod:`~tufl.ablation.execute`
trains the runs as ``python -m tufl train`` subprocesses, skipping finished ones;
:mod:`~tufl.ablation.table` reads their final validation records into mean ± sample
standard deviation per row and paired differences to a baseline row;
:mod:`~tufl.ablation.output` writes ``table.md``, ``table.json`` and ``index.html``
with its bar charts (:mod:`~tufl.ablation.chart`).
"""
