"""Reads sluice's event archive with DuckDB, as a user would, and prints what it found as JSON.

usage: duckdb_archive.py ARCHIVE_ROOT [count]

Prints {"groups": [[tenant, date, hour, rows], ...], "rows": [{column: value}, ...]}: the rows
per Hive partition, and every row in log order, timestamps as epoch milliseconds. With
`count`, prints only the number of rows.
"""

import json
import sys

import duckdb

root = sys.argv[1]
files = f"{root}/events/*/*/*/*.parquet"
source = f"read_parquet('{files}', hive_partitioning = true)"
con = duckdb.connect()
if sys.argv[2:] == ["count"]:
    print(con.execute(f"SELECT count(*) FROM {source}").fetchone()[0])
    sys.exit(0)
groups = con.execute(
    f"SELECT tenant, CAST(date AS VARCHAR), CAST(hour AS INTEGER), count(*) FROM {source} "
    "GROUP BY ALL ORDER BY ALL"
).fetchall()
times = ["timestamp", "received_at", "sent_at", "original_timestamp"]
text = [
    "message_id", "type", "event", "name", "category", "user_id", "anonymous_id", "group_id",
    "previous_id", "properties", "traits", "context", "integrations", "channel", "version",
    "metadata", "schema_violations",
]
columns = ["log_partition", "log_offset", "tenant"] + text + [f"epoch_ms({t}) AS {t}" for t in times]
cursor = con.execute(f"SELECT {', '.join(columns)} FROM {source} ORDER BY log_partition, log_offset")
names = [description[0] for description in cursor.description]
rows = [dict(zip(names, row)) for row in cursor.fetchall()]
json.dump({"groups": [list(group) for group in groups], "rows": rows}, sys.stdout)
