"""hqgnn: Hessian-aware quantized GNN recommenders (HQ-GNN) as a pure library.

Data in (Arrow tables, Parquet splits), tensors, dataclasses and files out. This package never
imports prefect, duckdb or great_expectations; orchestration lives in ``flows/``.
"""

__version__ = "0.1.0"
