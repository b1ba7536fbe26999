-- One pass of the k-core loop: delete the pairs of users with fewer than $k_user items and of
-- items with fewer than $k_item users. Returns the number of pairs deleted (0 = fixpoint).
delete from kcore_edges
where u in (select u from kcore_edges group by u having count(*) < $k_user)
   or i in (select i from kcore_edges group by i having count(*) < $k_item);
