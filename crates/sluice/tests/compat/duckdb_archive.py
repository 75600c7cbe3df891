"""Reads sluice's event archive with DuckDB, as a user would, and prints what it found as JSON.

usage: duckdb_archive.py ARCHIVE_ROOT [count | columns NAME...]

ARCHIVE_ROOT is a directory, or s3://bucket/prefix: then the archive's files are downloaded
first (boto3; endpoint, region and credentials from AWS_ENDPOINT_URL, AWS_REGION and the usual
variables), as DuckDB's httpfs extension would need the internet to install.

Prints {"groups": [[tenant, date, hour, rows], ...], "rows": [{column: value}, ...]}: the rows
per Hive partition, and every row in log order, timestamps as epoch milliseconds. With
`count`, prints only the number of rows. With `columns NAME...`, prints for every row in log
order [tenant, [typeof(NAME), NAME as text]...] of the promoted columns, the files read with
union_by_name (a tenant's files may have columns another's lack).
"""

import json
import os
import sys
import tempfile

import duckdb

root = sys.argv[1]
if root.startswith("s3://"):
    import boto3

    bucket, _, prefix = root[len("s3://"):].partition("/")
    base = f"{prefix}/" if prefix else ""
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
                      region_name=os.environ.get("AWS_REGION", "us-east-1"))
    downloads = tempfile.TemporaryDirectory()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}events/"):
        for item in page.get("Contents", []):
            local = os.path.join(downloads.name, item["Key"][len(base):])
            os.makedirs(os.path.dirname(local), exist_ok=True)
            s3.download_file(bucket, item["Key"], local)
    root = downloads.name
files = f"{root}/events/*/*/*/*.parquet"
source = f"read_parquet('{files}', hive_partitioning = true)"
con = duckdb.connect()
if sys.argv[2:] == ["count"]:
    print(con.execute(f"SELECT count(*) FROM {source}").fetchone()[0])
    sys.exit(0)
if sys.argv[2:3] == ["columns"]:
    union = f"read_parquet('{files}', hive_partitioning = true, union_by_name = true)"
    picked = ", ".join(f"typeof({name}), CAST({name} AS VARCHAR)" for name in sys.argv[3:])
    found = con.execute(
        f"SELECT tenant, {picked} FROM {union} ORDER BY log_partition, log_offset").fetchall()
    json.dump([[row[0]] + [list(row[i:i + 2]) for i in range(1, len(row), 2)] for row in found],
              sys.stdout)
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
