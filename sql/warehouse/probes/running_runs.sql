-- running_runs: rows of `runs` still marked `running` (the flow run holding the lock, or killed ones).
select run_id, flow_run_name, started_at
from runs
where status = 'running'
order by started_at;
