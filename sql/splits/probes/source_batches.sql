-- The ingested batches a snapshot is built from, in ingestion order.
select batch_id, source_file, source_hash, format, split_role, rows, accepted, quarantined
from batches
order by batch_no;
