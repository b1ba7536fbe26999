-- runs: one row per run of the Prefect flow `hqgnn` (written when it starts, replaced when it ends).
-- Parameters, data snapshot, metrics and per-stage outcomes are JSON so the table keeps its
-- shape when a config model grows a field. Query it, e.g.:
--   select run_id, status, duration_s, snapshot, metrics->>'$.test.recall@20' from runs order by started_at desc;
create table if not exists runs (
    run_id        varchar primary key,   -- the Prefect flow-run id
    flow_run_name varchar not null,      -- e.g. 'witty-turtle'
    deployment    varchar,               -- 'hqgnn/train', 'hqgnn/nightly'; null for ad-hoc runs
    status        varchar not null,      -- running, completed, failed, abandoned (killed; marked by the next run or `hqgnn doctor --repair`)
    started_at    timestamptz not null,
    finished_at   timestamptz,
    duration_s    double,
    parameters    json not null,         -- the flow parameters (config models as JSON)
    snapshot      varchar,               -- splits/<snapshot> the run trained on
    train_run     varchar,               -- models/<run>
    code_version  varchar,               -- codes/<version> exported by this run
    metrics       json,                  -- evaluation metrics (empty until evaluate ran)
    stages        json,                  -- {stage: {status: ran|skipped|unavailable|failed, seconds}}
    error         varchar                -- the failure message of a failed run
);

insert or replace into runs
with given as (
    select
        $run_id::varchar              as run_id,
        $flow_run_name::varchar       as flow_run_name,
        $deployment::varchar          as deployment,
        $status::varchar              as status,
        $started_at::timestamptz      as started_at,
        $finished_at::timestamptz     as finished_at,
        $parameters::json             as parameters,
        $snapshot::varchar            as snapshot,
        $train_run::varchar           as train_run,
        $code_version::varchar        as code_version,
        $metrics::json                as metrics,
        $stages::json                 as stages,
        $error::varchar               as error
),
timed as (
    select
        *,
        epoch(finished_at) - epoch(started_at) as duration_s
    from given
)
select
    run_id, flow_run_name, deployment, status, started_at, finished_at, duration_s,
    parameters, snapshot, train_run, code_version, metrics, stages, error
from timed;
