-- kcore: the clean interactions whose (u, i) survived the k-core loop (kcore_edges at fixpoint).
create or replace table kcore as
with survivors as (
    select u, i from kcore_edges
)

select clean.*
from clean
semi join survivors on clean.u = survivors.u and clean.i = survivors.i;
