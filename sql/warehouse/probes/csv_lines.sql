-- Every physical line of a text file ($path; .gz / .zst decompressed by DuckDB), in file order,
-- an empty line as null: the line index that numbers the rows of sql/csv_rows.sql (DuckDB's CSV
-- reader skips blank lines and keeps no line numbers for the rows it accepts). No quoting: a
-- quoted field that spans lines spans lines here too.
select line
from read_csv(
    $path, columns = {'line': 'varchar'}, delim = chr(0), new_line = '\r\n', quote = '', escape = '',
    header = false, auto_detect = false, strict_mode = false, compression = 'auto'
)
