-- item_map: dense item_idx 0..n-1 over the items of the train split, in id order (i).
create or replace table item_map as
with train as (
    select i from split where split = 'train'
),

counts as (
    select i, count(*) as n_train from train group by i
)

select (row_number() over (order by counts.i) - 1)::integer as item_idx, item_ids.item_id, counts.n_train::integer as n_train, counts.i
from counts
join item_ids using (i);
