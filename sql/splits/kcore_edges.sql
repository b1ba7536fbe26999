-- kcore_edges: the working set of the k-core loop, (u, i) pairs of clean, pruned in place by
-- steps/prune_kcore_edges.sql until nothing changes.
create or replace temp table kcore_edges as
with source as (
    select u, i from clean
)

select u, i from source;
