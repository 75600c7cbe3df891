"""Sends track, page and identify calls to sluice with Segment's own Python SDK
(segment-analytics-python, from PyPI), in batches, then prints one JSON line per message sent
so the Rust test can check every field that arrived in sluice's log.

usage: segment_python.py HOST WRITE_KEY GZIP(0|1)
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from segment.analytics import Client

host, write_key, gzip = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
errors = []
client = Client(
    write_key,
    host=host,
    gzip=gzip,
    upload_size=7,  # several batches, not one
    max_retries=3,
    on_error=lambda error, batch: errors.append(f"{error} ({len(batch)} messages)"),
)

base = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
sent = []

for i in range(12):
    ok, msg = client.track(
        user_id=f"py-user-{i % 4}",
        event="Order Completed" if i % 3 == 0 else "Button Clicked",
        properties={"revenue": 10.25 + i, "items": [{"sku": f"sku-{i}", "qty": i + 1}], "coupon": None},
        context={"ip": "10.0.0.%d" % i, "campaign": {"source": "newsletter"}},
        timestamp=base + timedelta(seconds=i),
        anonymous_id=f"py-anon-{i}",
        message_id=f"py-track-{i}",
    )
    sent.append(msg)

for i in range(5):
    ok, msg = client.page(
        anonymous_id=f"py-anon-page-{i}",
        category="Docs",
        name=f"Page {i}",
        properties={"url": f"https://shop.example/docs/{i}", "title": f"Docs {i}"},
        timestamp=base + timedelta(minutes=1, seconds=i),
        message_id=f"py-page-{i}",
    )
    sent.append(msg)

for i in range(6):
    ok, msg = client.identify(
        user_id=f"py-user-{i}",
        traits={"email": f"user{i}@shop.example", "plan": "pro" if i % 2 else "free", "logins": i},
        timestamp=base + timedelta(minutes=2, seconds=i),
        message_id=f"py-identify-{i}",
    )
    sent.append(msg)

client.flush()
client.join()

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
for msg in sent:
    print(json.dumps(msg, default=str))
