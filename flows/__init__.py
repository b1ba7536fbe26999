"""The hqgnn application: the pipeline around the ``hqgnn`` library (see docs/architecture.md).

- ``flows.cli``: the ``hqgnn`` command line (typer); the one error boundary.
- ``flows.stages``: one module per stage (ingest, prepare, train, export, evaluate, recommend):
  a plain function (extract -> compute -> write -> validate), called by the CLI, and one thin
  Prefect flow around it.
- ``flows.pipeline``: the parent flow ``hqgnn``; ``flows.sweep``: the flow ``hqgnn-sweep``.
- ``flows.config`` (stage configs), ``flows.workdir`` (the work-directory layout),
  ``flows.errors`` (errors worded for users), ``flows.paths`` (where sql/ and data_contracts/ are).
- ``flows.warehouse`` (DuckDB and the SQL runner), ``flows.contracts`` (data contracts on Great
  Expectations), ``flows.rawio`` (raw files), ``flows.split_files`` / ``flows.trained_runs``
  (reading snapshots and runs), ``flows.report``, ``flows.artifacts``, ``flows.runs``.
"""
