-- views over one exported code version, read straight from its Parquet files (never from
-- warehouse.duckdb, so analysts never block a nightly run).
-- Set the folder first:  SET VARIABLE hqgnn_codes = 'hqgnn-work/codes/current';
--
--   user_codes    user_idx, user_id, bits, code, scale [, code_values]   (codes/<v>/users.parquet)
--   item_codes    item_idx, item_id, bits, code, scale [, code_values]   (codes/<v>/items.parquet)
--   code_manifest one row: version, run, bits, dim, estimator, snapshot, metrics, ...
--
-- code: BLOB, 1 bit: dim sign bits in 64-bit words (code::BIT then bit_count(xor(...)) is the
-- Hamming distance); b bits: packed fields. code_values (b >= 2, and the 1-bit items of a
-- float-users export): the codes as a list. A float-users export (code_manifest.user_bits = 32)
-- has float32 users: rank with user_topk_inner_product.sql, not the Hamming queries.
create or replace view user_codes as
select * from read_parquet(getvariable('hqgnn_codes') || '/users.parquet');

create or replace view item_codes as
select * from read_parquet(getvariable('hqgnn_codes') || '/items.parquet');

create or replace view code_manifest as
select * from read_json(getvariable('hqgnn_codes') || '/manifest.json');
