-- Record the staged file as one batch, with its row counts.
insert into batches
with counts as (
    select
        count(*) as rows,
        count(*) filter (where reason is null) as accepted,
        count(*) filter (where reason is not null) as quarantined
    from staged
),

numbered as (
    select coalesce(max(batch_no), 0) + 1 as batch_no from batches
)

select
    $batch_id, numbered.batch_no, $source_file, $source_hash, $format, $split_role::varchar,
    $columns, counts.rows, counts.accepted, counts.quarantined, now()
from counts, numbered;
