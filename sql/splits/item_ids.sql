-- item_ids: a dense integer key per distinct raw item id, in id order: numeric when every id is
-- an integer (so 0-based integer ids keep their value), else by string.
create or replace table item_ids as
with ids as (
    select distinct item_id from raw
),

numbered as (
    select item_id, case when regexp_full_match(item_id, '-?[0-9]{1,30}') then item_id::hugeint end as num
    from ids
),

flags as (
    select bool_and(num is not null) as all_int from numbered
)

select item_id, (row_number() over (order by case when all_int then num end, item_id) - 1)::integer as i
from numbered, flags;
