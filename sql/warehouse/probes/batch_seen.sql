-- The batch that already holds a file with this content (re-ingesting it adds nothing).
select batch_id, source_file from batches where source_hash = $source_hash;
