"""The application layer around the ``hqgnn`` library.

- ``flows.cli``: the ``hqgnn`` command line (typer).
- ``flows.stages``: one plain function per stage (extract -> compute -> write -> validate),
  called by the CLI and wrapped by the Prefect flows.
- ``flows.warehouse``: the DuckDB warehouse and the runner of the SQL stages in ``sql/``.
- ``flows.contracts``: the loader of ``data_contracts/`` into Great Expectations suites and
  the one ``validate()``.
- Prefect: ``flows.pipeline_flow`` (the parent flow ``hqgnn``), ``flows.stage_flows`` (one flow
  per stage), ``flows.tasks`` (thin tasks over the stages), ``flows.artifacts`` and
  ``flows.runs`` (the ``runs`` table); deployments in ``prefect.yaml``.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"
CONTRACTS_DIR = REPO_ROOT / "data_contracts"
