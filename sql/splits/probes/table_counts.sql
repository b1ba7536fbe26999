-- Row counts of the warehouse tables a split snapshot was built from.
select
    (select count(*) from raw) as raw,
    (select count(*) from quarantine) as quarantined,
    (select count(*) from clean) as clean,
    (select count(*) from kcore) as kcore,
    (select count(*) filter (where split_role = 'test') from kcore) as kcore_test_role;
