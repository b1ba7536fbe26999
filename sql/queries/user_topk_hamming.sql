-- user_topk_hamming: the $k items nearest to user $user_id (original id) by Hamming distance
-- of 1-bit codes: bit_count(xor(...)) over the packed 64-bit words. Ties: lower item_idx first
-- (as hqgnn.retrieval and FAISS). Needs views.sql. Seen (train) items are NOT masked: the codes
-- carry no interactions (`hqgnn recommend` masks them).
-- score: the model's score s_u * s_i * (dim - 2 * hamming); pure Hamming ranking ignores s_i.
with
the_user as (
    select code, scale
    from user_codes
    where user_id = $user_id
),
dims as (
    select dim from code_manifest
),
distances as (
    select
        i.item_idx,
        i.item_id,
        bit_count(xor(u.code::bit, i.code::bit)) as hamming,
        u.scale * ((d.dim - 2 * bit_count(xor(u.code::bit, i.code::bit)))::float * i.scale) as score
    from item_codes as i
    cross join the_user as u
    cross join dims as d
)
select
    row_number() over (order by hamming, item_idx) as rank,
    item_id,
    item_idx,
    hamming,
    score
from distances
order by hamming, item_idx
limit $k;
