-- item_similar_inner_product: the $k items most similar to item $item_id (original id) for
-- b-bit (or 32-bit float) codes, by <q_t, q_i> * s_i in float32; the item itself left out;
-- ties: lower item_idx. Needs views.sql.
with
the_item as (
    select item_idx, code_values
    from item_codes
    where item_id = $item_id
),
scored as (
    select
        i.item_idx,
        i.item_id,
        list_dot_product(t.code_values, i.code_values) as inner_product,
        list_dot_product(t.code_values, i.code_values)::float * i.scale as rank_key
    from item_codes as i
    cross join the_item as t
    where i.item_idx <> t.item_idx
)
select
    row_number() over (order by rank_key desc, item_idx) as rank,
    item_id,
    item_idx,
    inner_product,
    rank_key as score
from scored
order by rank_key desc, item_idx
limit $k;
