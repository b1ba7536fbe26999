-- abandon_runs: rows of `runs` still `running` although no run holds the work directory's lock
-- (the process was killed): marked `abandoned`, with when that was noticed. Returns their ids.
update runs
set status = 'abandoned',
    error = coalesce(error, 'abandoned: the process ended without recording an outcome (killed?); noticed at ' || strftime($noticed_at::timestamptz, '%Y-%m-%dT%H:%M:%SZ'))
where status = 'running'
  and run_id <> $keep_run_id
returning run_id;
