-- Free one file's rows once the reader has turned them into its Arrow table.
drop table if exists csv_rows;
