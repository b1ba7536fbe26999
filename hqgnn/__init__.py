"""hqgnn: Hessian-aware quantized GNN recommenders (HQ-GNN), the math as a library.

Arrays, tensors and configs in (numpy, torch, Arrow tables, a :class:`hqgnn.recipe.TrainRecipe`);
tensors, dataclasses and files out (checkpoints, training history, code tables as Arrow). This
package never imports prefect, duckdb or great_expectations and knows no work directory or
command line; the application around it lives in ``flows/`` (see docs/architecture.md).
"""

__version__ = "0.1.0"
