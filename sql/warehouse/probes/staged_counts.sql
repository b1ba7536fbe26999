-- Row counts of the staged file and its most frequent quarantine reason.
with reasons as (
    select reason, count(*) as n from staged where reason is not null group by reason
)

select
    (select count(*) from staged) as rows,
    (select count(*) from staged where reason is null) as accepted,
    (select count(*) from staged where reason is not null) as quarantined,
    (select reason from reasons order by n desc, reason limit 1) as top_reason;
