-- The dialect of one delimited file as DuckDB's sniffer sees it, told only the quoting
-- (RFC 4180) and to look past malformed lines: delimiter, whether the first line is a header,
-- and the columns (name, type) it found.
select Delimiter as delimiter, HasHeader as header, Columns as columns
from sniff_csv($path, quote = '"', escape = '"', ignore_errors = true)
