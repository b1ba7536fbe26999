-- item_similar_hamming: the $k items most similar to item $item_id (original id), 1-bit codes,
-- by Hamming distance (bit_count(xor(...))); the item itself left out; ties: lower item_idx.
-- Needs views.sql.
with
the_item as (
    select item_idx, code
    from item_codes
    where item_id = $item_id
),
distances as (
    select
        i.item_idx,
        i.item_id,
        bit_count(xor(t.code::bit, i.code::bit)) as hamming
    from item_codes as i
    cross join the_item as t
    where i.item_idx <> t.item_idx
)
select
    row_number() over (order by hamming, item_idx) as rank,
    item_id,
    item_idx,
    hamming
from distances
order by hamming, item_idx
limit $k;
