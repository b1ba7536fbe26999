"""The ``hqgnn`` command line (see ``shared/interface.md``).

Every subcommand takes ``--workdir`` and ``--config FILE`` (YAML, one section per stage, the
same keys as the flow parameters); options given on the command line override the file.
Errors print one clear line on standard error and exit non-zero; ``--debug`` shows the traceback.
Heavy imports (torch, duckdb, GX) happen inside the commands, so ``--help`` stays instant.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console

from flows.config import PipelineConfig
from flows.errors import HqgnnError
from flows.lock import workdir_lock
from flows.workdir import DEFAULT_WORKDIR, WorkDir

if TYPE_CHECKING:
    from hqgnn.retrieval import RankBy

app = typer.Typer(
    name="hqgnn",
    help="Hessian-aware quantized GNN recommenders: ingest, prepare, train, export, evaluate, recommend.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
C = TypeVar("C", bound=BaseModel)

WorkdirOpt = Annotated[Path, typer.Option("--workdir", help="Work directory (warehouse, splits, models, codes, reports).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file with one section per stage; options override it.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
WaitOpt = Annotated[float | None, typer.Option(
    "--wait", metavar="[SECONDS]",
    help="If another command is writing this work directory, wait for it (up to SECONDS; bare --wait: no limit) instead of failing at once.",
)]


def load_pipeline_config(path: Path | None) -> PipelineConfig:
    """Read a ``--config`` YAML file into a :class:`PipelineConfig` (unknown keys rejected)."""
    if path is None:
        return PipelineConfig()
    if not path.is_file():
        raise HqgnnError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise HqgnnError(f"--config {path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise HqgnnError(f"--config {path}: expected a mapping of stage sections, got {type(data).__name__}")
    try:
        return PipelineConfig(**data)
    except ValidationError as e:
        raise HqgnnError(f"--config {path}: {_pydantic_message(e)}") from e


def with_overrides(base: C, **overrides: Any) -> C:
    """A copy of ``base`` with the options given on the command line (``None`` = not given), re-validated."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        # Only what the config file set: defaults that validators derived from other fields
        # (TrainConfig.estimator from bits) must be derived again from the overridden values.
        return type(base)(**{**base.model_dump(exclude_unset=True), **given})
    except ValidationError as e:
        raise HqgnnError(_pydantic_message(e)) from e


def _pydantic_message(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in e.errors())


def _fail(e: BaseException, debug: bool, message: str | None = None) -> None:
    if debug:
        raise e
    console.print(f"[bold red]error:[/] {_escape(message or str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _run(debug: bool, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The CLI's one error boundary: call a stage; every expected failure becomes one clear line
    on stderr (naming the file and the next step, :func:`flows.failures.explain`) and exit status
    1; ``--debug`` re-raises with the traceback. Ctrl-C exits 130."""
    from flows.failures import explain

    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(code=130) from None
    except typer.Exit:
        raise
    except Exception as e:
        _fail(e, debug, explain(e))


def _parse_columns(spec: str | None) -> dict[str, str] | None:
    """``user=userId,item=movieId`` -> ``{"user": "userId", "item": "movieId"}``."""
    if spec is None:
        return None
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        role, sep, col = part.partition("=")
        if not sep or not role or not col:
            raise HqgnnError(f"--columns: expected ROLE=COLUMN pairs such as user=userId,item=movieId; got {part!r}")
        out[role.strip()] = col.strip()
    return out


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Raw interaction files to load.")],
    format: Annotated[str | None, typer.Option("--format", help="csv, tsv, parquet, movielens or lightgcn.")] = None,
    columns: Annotated[str | None, typer.Option("--columns", help="Column mapping, e.g. user=userId,item=movieId,timestamp=timestamp,rating=rating (names, or 0-based positions without a header).")] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="Field delimiter for csv/tsv (default: ',' / tab).")] = None,
    header: Annotated[bool | None, typer.Option("--header/--no-header", help="Whether csv/tsv files have a header row (default: yes).")] = None,
    split_role: Annotated[str | None, typer.Option("--split-role", help="train or test: mark rows for the predefined split.")] = None,
    rating_min: Annotated[float | None, typer.Option("--rating-min", help="Ratings below this are quarantined.")] = None,
    rating_max: Annotated[float | None, typer.Option("--rating-max", help="Ratings above this are quarantined.")] = None,
    timestamp_unit: Annotated[str | None, typer.Option("--timestamp-unit", help="Numeric timestamps: auto (per file, from their magnitude), s, ms, us, or iso (ISO-8601 only).")] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Load raw interaction files into the warehouse; bad rows are quarantined with a reason."""
    from flows.stages.ingest import ingest as run_ingest

    def go() -> Any:
        cfg = with_overrides(
            load_pipeline_config(config).ingest,
            files=tuple(files), format=format, columns=_parse_columns(columns), delimiter=delimiter,
            header=header, split_role=split_role, rating_min=rating_min, rating_max=rating_max,
            timestamp_unit=timestamp_unit,
        )
        with workdir_lock(workdir, "ingest", wait):
            return run_ingest(WorkDir(workdir), cfg)

    _run(debug, go)


@app.command()
def prepare(
    kcore_user: Annotated[int | None, typer.Option("--kcore-user", help="Minimum interactions per user (default 10).")] = None,
    kcore_item: Annotated[int | None, typer.Option("--kcore-item", help="Minimum interactions per item (default 10).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="random, temporal, loo or predefined.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the split.")] = None,
    rating_threshold: Annotated[float | None, typer.Option("--rating-threshold", help="Keep interactions with rating >= this (implicit feedback).")] = None,
    train_ratio: Annotated[float | None, typer.Option("--train-ratio", help="Share of each user's interactions in train (random/temporal).")] = None,
    valid_ratio: Annotated[float | None, typer.Option("--valid-ratio", help="Share in valid (random/temporal), or carved from train (predefined).")] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Clean, k-core filter and split the warehouse into contract-checked Parquet splits."""
    from flows.stages.prepare import prepare as run_prepare

    def go() -> Any:
        cfg = with_overrides(
            load_pipeline_config(config).prepare,
            kcore_user=kcore_user, kcore_item=kcore_item, split=split, seed=seed,
            rating_threshold=rating_threshold, train_ratio=train_ratio, valid_ratio=valid_ratio,
        )
        with workdir_lock(workdir, "prepare", wait):
            return run_prepare(WorkDir(workdir), cfg)

    _run(debug, go)


@app.command()
def train(
    bits: Annotated[int | None, typer.Option("--bits", help="Code width: 1, 2, 4, 8, or 32 (float32).")] = None,
    estimator: Annotated[str | None, typer.Option("--estimator", help="none (float32), ste or gste.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Maximum epochs (early stopping on validation Recall@20).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its last checkpoint.")] = False,
    run: Annotated[str | None, typer.Option("--run", help="Run name (default: generated; with --resume: the latest run).")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Split snapshot (default: splits/current).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for initialisation and sampling.")] = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Data-parallel processes via torchrun (gloo on CPU, NCCL per GPU); the batch size stays the global batch. With --resume: default the run's.")] = None,
    init_from: Annotated[str | None, typer.Option("--init-from", help="Warm start: none (cold, default), published (the run behind the published codes of this width), latest, or a run name; rows matched by original id.")] = None,
    warm_epochs: Annotated[int | None, typer.Option("--warm-epochs", help="Epochs of a warm-started run (default: --epochs).")] = None,
    warm_lr: Annotated[float | None, typer.Option("--warm-lr", help="Learning rate of a warm-started run (default: --lr of the config); fine-tuning a converged model wants a smaller one.")] = None,
    float_users: Annotated[bool | None, typer.Option("--float-users/--user-codes", help="Ship the users as float32 vectors against the item codes (quantize the items only; more quality at the same bytes per item, a float product instead of popcount) or as codes of --bits (default: the config's, else codes).")] = None,
    distill_from: Annotated[str | None, typer.Option("--distill-from", help="With distill_top > 0: whose ranking the codes learn: parent (the warm start's float parent, default), best (the float32 run on this split with the best validation Recall@20) or the name of a trained float32 run of any width, e.g. a wider one.")] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Train LightGCN + b-bit quantizer (STE or Hessian-aware GSTE) on the current splits."""
    from flows.stages.train import train as run_train

    def go() -> Any:
        cfg = with_overrides(
            load_pipeline_config(config).train,
            bits=bits, estimator=estimator, epochs=epochs, device=device, resume=resume or None,
            run=run, snapshot=snapshot, seed=seed, nproc=nproc, init_from=init_from, warm_epochs=warm_epochs,
            warm_lr=warm_lr, float_users=float_users, distill_from=distill_from,
        )
        with workdir_lock(workdir, "train", wait):
            return run_train(WorkDir(workdir), cfg)

    _run(debug, go)


@app.command()
def export(
    run: Annotated[str | None, typer.Option("--run", help="Run to export (default: the latest).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Publish even if the metric regressed (contracts still apply).")] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Export a run's codes and publish them as codes/current through the publish gate."""
    from flows.stages.export import export as run_export

    def go() -> Any:
        cfg = with_overrides(load_pipeline_config(config).export, run=run, force=force or None)
        with workdir_lock(workdir, "export", wait):
            return run_export(WorkDir(workdir), cfg)

    _run(debug, go)


@app.command()
def evaluate(
    run: Annotated[str | None, typer.Option("--run", help="Run to evaluate (default: the latest).")] = None,
    k: Annotated[str | None, typer.Option("--k", help="Cut-offs, comma-separated (default 20,50).")] = None,
    rerank: Annotated[bool, typer.Option("--rerank", help="Top-R by codes, re-ranked with float embeddings.")] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Evaluate a run on valid and test (float and codes): metrics, latency, memory, report, plot."""
    from flows.stages.evaluate import evaluate as run_evaluate

    def go() -> Any:
        ks = None if k is None else tuple(int(x) for x in k.split(",") if x.strip())
        cfg = with_overrides(load_pipeline_config(config).evaluate, run=run, ks=ks, rerank=rerank or None)
        with workdir_lock(workdir, "evaluate", wait):
            return run_evaluate(WorkDir(workdir), cfg)

    _run(debug, go)


@app.command()
def recommend(
    user: Annotated[str | None, typer.Option("--user", help="Original user id.")] = None,
    items: Annotated[str | None, typer.Option("--items", help="Instead of --user: original item ids, comma-separated (an anonymous visitor; folded in like a new user).")] = None,
    k: Annotated[int, typer.Option("--k", help="Number of items.")] = 20,
    rank_by: Annotated[str, typer.Option("--rank-by", help="score (the model's code score, default) or hamming (1-bit codes: pure Hamming distance, as the SQL query).")] = "score",
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Top-K item ids for a user (or, with --items, for a list of items) from the published codes
    (codes/current), the user's train items (the given items) excluded."""
    from flows.stages.recommend import recommend as run_recommend
    from flows.stages.recommend import recommend_items

    def go() -> Any:
        load_pipeline_config(config)  # validate the file even though recommend has no section
        if (user is None) == (items is None):
            raise HqgnnError("recommend: give exactly one of --user ID or --items ID,ID,...")
        if items is not None:
            return recommend_items(WorkDir(workdir), items.split(","), k, cast("RankBy", rank_by))  # checked by the retriever
        assert user is not None  # exactly one of the two was given
        return run_recommend(WorkDir(workdir), user, k, cast("RankBy", rank_by))  # checked by the retriever

    _run(debug, go)


@app.command()
def foldin(
    bits: Annotated[int | None, typer.Option("--bits", help="Width whose published codes get the new users (default: that of codes/current).")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Split snapshot with the new users (default: splits/current).")] = None,
    refine_rounds: Annotated[int | None, typer.Option("--refine-rounds", min=0,
                                                      help="1 bit: rounds of user-code refinement after the fold-in (default 4).")] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Codes for users in the warehouse's snapshot but not in the published model, without
    retraining (LightGCN fold-in over their train items, then user-code refinement against the
    published item codes); published as a new code version."""
    from flows.stages.foldin import foldin as run_foldin

    def go() -> Any:
        from flows.config import FoldInConfig

        cfg = with_overrides(load_pipeline_config(config).foldin or FoldInConfig(), bits=bits, snapshot=snapshot, refine_rounds=refine_rounds)
        with workdir_lock(workdir, "foldin", wait):
            return run_foldin(WorkDir(workdir), cfg)

    _run(debug, go)


@app.command("run")
def run_all(
    demo: Annotated[bool, typer.Option("--demo", help="Generate the bundled synthetic dataset first and run on it.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rerun stages whose inputs did not change (otherwise they are skipped).")] = False,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """The whole pipeline as the Prefect flow `hqgnn`: ingest (files from the config, or the demo
    data), prepare, train, export, evaluate. Runs in Prefect's ephemeral mode (no server needed)
    unless PREFECT_API_URL points at a server."""
    from flows.pipeline import run_flow

    if not debug:
        quiet_console_tracebacks()

    def go() -> Any:
        cfg = load_pipeline_config(config)
        with workdir_lock(workdir, "run", wait):  # the flow takes it again (re-entrant in this process)
            return run_flow(WorkDir(workdir), cfg, demo=demo, force=force)

    _run(debug, go)


def _parse_list(option: str, spec: str | None, cast: type, choices: tuple[Any, ...], default: list[Any]) -> list[Any]:
    """``1,4,32`` -> ``[1, 4, 32]``: every value one of ``choices`` (if any), none twice, not empty."""
    if spec is None:
        return list(default)
    values: list[Any] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            value = cast(part)
        except ValueError:
            raise HqgnnError(f"{option}: expected comma-separated {cast.__name__} values such as {','.join(map(str, choices or default))}; got {part!r}") from None
        if choices and value not in choices:
            raise HqgnnError(f"{option}: {value!r} is not one of {', '.join(map(str, choices))}")
        if value in values:
            raise HqgnnError(f"{option}: {value!r} given twice")
        values.append(value)
    if not values:
        raise HqgnnError(f"{option}: give at least one value")
    return values


def _parse_axes(dims: str | None, specs: list[str]) -> dict[str, list[Any]]:
    """``--dims 32,64`` and ``--axis lr=0.01,0.02`` -> ``{"dim": [32, 64], "lr": [0.01, 0.02]}``
    (values read as YAML scalars; checked against the train settings by the flow's grid)."""
    from flows.sweep import check_axes

    axes: dict[str, list[Any]] = {}
    if dims is not None:
        axes["dim"] = _parse_list("--dims", dims, int, (), [])
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip():
            raise HqgnnError(f"--axis: expected KEY=V1,V2 such as lr=0.01,0.02; got {spec!r}")
        if key.strip() in axes:
            raise HqgnnError(f"--axis: {key.strip()!r} given twice")
        axes[key.strip()] = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
    try:
        check_axes(axes)
    except ValueError as e:
        raise HqgnnError(f"--axis: {e}") from e
    return axes


@app.command()
def sweep(
    bits: Annotated[str | None, typer.Option("--bits", help="Code widths, comma-separated (default 1,2,4,8,32; 32 = float32, trained once per seed).")] = None,
    estimator: Annotated[str | None, typer.Option("--estimator", "--estimators", help="Estimators for bits < 32, comma-separated: ste, gste (default both).")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", "--seed", help="Seeds, comma-separated (default: the config's train seed, 2024).")] = None,
    dims: Annotated[str | None, typer.Option("--dims", help="Embedding dimensions, comma-separated, e.g. 32,64,128,256 (default: the config's dim).")] = None,
    axis: Annotated[list[str] | None, typer.Option("--axis", help="Any other train setting as an axis, KEY=V1,V2 (repeatable), e.g. --axis lr=0.01,0.02.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Maximum epochs of every cell.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Split snapshot (default: splits/current, pinned at the start).")] = None,
    k: Annotated[str | None, typer.Option("--k", help="Cut-offs, comma-separated (default 20,50); the table uses the smallest.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Processes of the local Dask cluster (ignored with --address).")] = 2,
    address: Annotated[str | None, typer.Option("--address", help="A running Dask scheduler, e.g. tcp://scheduler:8786 (default: a local cluster).")] = None,
    threads: Annotated[int, typer.Option("--threads", help="Torch threads per cell (0: cores // workers).")] = 0,
    sweep_id: Annotated[str | None, typer.Option("--sweep-id", help="Names reports/sweep-<id> and the runs (default: UTC time).")] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    config: ConfigOpt = None,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Train and evaluate a grid of bits x estimators x seeds (x dims x any --axis) in parallel
    (Prefect flow `hqgnn-sweep` on Dask); prints the comparison table, written to
    reports/sweep-<id>/ with plots of recall vs bits and vs bytes per item."""
    from hqgnn.bits import ALL_BITS, QUANT_ESTIMATORS

    def go() -> Path:
        cfg = load_pipeline_config(config)
        train_cfg = with_overrides(cfg.train, epochs=epochs, device=device, snapshot=snapshot)
        ks = None if k is None else tuple(_parse_list("--k", k, int, (), [20]))
        eval_cfg = with_overrides(cfg.evaluate, ks=ks)
        grid_bits = _parse_list("--bits", bits, int, ALL_BITS, list(ALL_BITS))
        grid_estimators = _parse_list("--estimator", estimator, str, QUANT_ESTIMATORS, list(QUANT_ESTIMATORS))  # 32 bits is "none" by itself
        grid_seeds = _parse_list("--seeds", seeds, int, (), [train_cfg.seed])
        axes = _parse_axes(dims, axis or [])
        if workers < 1 or threads < 0:
            raise HqgnnError(f"--workers must be >= 1 and --threads >= 0, got {workers} and {threads}")
        split = WorkDir(workdir).split(train_cfg.snapshot)
        if not split.is_dir():
            raise HqgnnError(f"no split snapshot {split}: run `hqgnn prepare` first")
        from flows.sweep import sweep_cells

        try:  # every cell's config valid before Prefect starts
            sweep_cells(train_cfg, grid_bits, grid_estimators, grid_seeds, split.name, "check", axes)
        except ValidationError as e:
            raise HqgnnError(f"sweep grid: {_pydantic_message(e)}") from e

        from flows.sweep import hqgnn_sweep

        if not debug:
            quiet_console_tracebacks()
        with workdir_lock(workdir, "sweep", wait):  # held for the grid; the Dask workers run under it
            return Path(hqgnn_sweep(
                workdir=str(workdir.absolute()), bits=grid_bits, estimators=grid_estimators, seeds=grid_seeds,
                axes=axes, train=train_cfg, evaluate=eval_cfg, sweep_id=sweep_id, dask_address=address,
                n_workers=workers, torch_threads=threads,
            ))

    out = _run(debug, go)
    typer.echo((out / "comparison.md").read_text(), nl=False)
    console.print(f"sweep: table, plot and per-cell rows in {out}", highlight=False, soft_wrap=True)


@app.command()
def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Repair what can be repaired without losing data, reporting every action.")] = False,
    contracts: Annotated[bool, typer.Option("--contracts/--no-contracts", help="Also check the data contracts of splits/current and codes/current.")] = True,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Check the work directory (pointers, manifests, hashes, contracts, debris of killed commands,
    runs left `running`); --repair fixes what it can. Exit 1 while a problem remains."""
    from flows.doctor import examine
    from flows.doctor import repair as run_repair

    def go() -> Any:
        wd = WorkDir(workdir)
        if not wd.root.is_dir():
            raise HqgnnError(f"no work directory at {wd.root}")
        with workdir_lock(workdir, "doctor", wait):  # needs a quiet directory: a writer's temp files are no debris
            report = examine(wd, contracts)
            if repair and report.problems:
                run_repair(wd, report)
                after = examine(wd, contracts)
                return report, after
            return report, None

    report, after = _run(debug, go)
    for f in report.findings:
        typer.echo(f.line())
    left = (after or report).problems
    if after is not None:
        for f in left:
            typer.echo(f"still     {f.kind}: {f.path}: {f.problem}")
    if not left:
        typer.echo(f"doctor: {workdir} is healthy" + (f" ({sum(f.outcome is not None for f in report.findings)} repair(s) done)" if after is not None else ""))
        return
    hint = "" if repair else "; run `hqgnn doctor --repair`" if any(f.repair for f in left) else ""
    console.print(f"doctor: {len(left)} problem(s) in {workdir}{hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes (each loads the codes and watches codes/current).")] = 1,
    poll: Annotated[float, typer.Option("--poll", min=0.05, help="Seconds between checks of codes/current for a new version.")] = 1.0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="torch/FAISS threads per worker (1: each request on one core).")] = 1,
    bucket_index_from: Annotated[int, typer.Option("--bucket-index-from", min=1, help="1-bit catalogues of at least this many items rank through the bucketed FAISS index (faster, 16 B/item at d = 64); smaller ones by one scan (12 B/item). Same ranking either way.")] = 100_000,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    debug: DebugOpt = False,
) -> None:
    """HTTP recommendations from codes/current (/recommend, /similar, /healthz, /version, /metrics);
    loads, verifies and hot-swaps each version `export` or `rollback` publishes."""
    import os

    def go() -> None:
        WorkDir(workdir).code_version()  # fail fast with one line when nothing is published yet
        import uvicorn

        os.environ.update(HQGNN_SERVE_WORKDIR=str(Path(workdir).resolve()), HQGNN_SERVE_POLL_S=str(poll), HQGNN_SERVE_THREADS=str(threads),
                          HQGNN_SERVE_SCALED_INDEX_MIN_ITEMS=str(bucket_index_from),
                          # before FAISS/torch load: OpenMP's thread count is per thread once set, and
                          # request threads would otherwise spin a pool per core (stalls of 0.5 s seen)
                          OMP_NUM_THREADS=str(threads))
        fresh = workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if fresh:  # /metrics sums every worker (prometheus_client multiprocess mode), counted from zero
            import tempfile

            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hqgnn-serve-metrics-")
        try:
            uvicorn.run("flows.serving.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                        log_level="debug" if debug else "info", access_log=debug)
        finally:
            if fresh:
                import shutil

                shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)

    _run(debug, go)


@app.command()
def versions(workdir: WorkdirOpt = DEFAULT_WORKDIR, debug: DebugOpt = False) -> None:
    """List the code versions: width, published or not, gate verdict and metric, which is current."""
    from flows.stages.versions import list_versions, print_versions

    _run(debug, lambda: print_versions(list_versions(WorkDir(workdir))))


@app.command()
def rollback(
    to: Annotated[str | None, typer.Option("--to", help="Version folder name (default: the previous published version of the current width).")] = None,
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    wait: WaitOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Switch codes/current (and its width's pointer) back to an earlier version, after re-checking
    its hashes and contracts; recorded in the warehouse `runs` table."""
    from flows.stages.versions import rollback as run_rollback

    def go() -> Path:
        with workdir_lock(workdir, "rollback", wait):
            return run_rollback(WorkDir(workdir), to, console)

    _run(debug, go)


class _OneLineFormatter(logging.Formatter):
    """Wraps a console formatter so log records print without their traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_console_tracebacks() -> None:
    """Keep tracebacks out of the terminal (flow commands without ``--debug``): Prefect's console
    handlers print one line per record; the run's log in Prefect (API handler) keeps the full
    traceback, so the real cause stays on record."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _OneLineFormatter):
                handler.setFormatter(_OneLineFormatter(handler.formatter))


TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def expand_bare_wait(argv: list[str]) -> list[str]:
    """``--wait`` with no number after it means "no limit": ``--wait inf`` (click has no optional
    option values). ``--wait 30`` and ``--wait=30`` pass unchanged."""
    out: list[str] = []
    for k, arg in enumerate(argv):
        out.append(arg)
        if arg == "--wait":
            nxt = argv[k + 1] if k + 1 < len(argv) else None
            try:
                float(nxt) if nxt is not None else None
            except ValueError:
                nxt = None
            if nxt is None:
                out.append("inf")
    return out


def main() -> None:
    """Console-script entry point (telemetry of Prefect and GX off unless the user set it)."""
    import os

    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    try:
        app(args=expand_bare_wait(sys.argv[1:]))
    except BrokenPipeError:  # e.g. `hqgnn recommend ... | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
