"""The training grid of ``run_all.sh``: its plan, and its runs scheduled on a Dask cluster.

Modules:

* ``plan``: the runs of the grid and their ``members.train`` arguments (``build_plan``), one definition
  for both schedulers;
* ``cluster``: one Dask task per run, logs streamed back, results checked and written on the client;
* ``__main__``: ``python -m members.grid --scheduler ADDR`` (what ``./run_all.sh --scheduler ADDR`` runs)
  and ``--plan`` (what ``run_all.sh`` reads to schedule locally).
"""
