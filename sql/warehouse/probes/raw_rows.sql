-- The raw rows of some batches (what the `raw` contract checks after an ingest).
with batch_rows as (
    select * from raw where list_contains($batch_ids, batch_id)
)

select batch_id, source_file, source_hash, line_no, pos, seq, user_id, item_id, "timestamp", rating, split_role
from batch_rows;
