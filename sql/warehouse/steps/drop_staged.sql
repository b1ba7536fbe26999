-- Free the staged file once it is in raw / quarantine.
drop table if exists staged;
