"""Confluent's own clients against sluice's schema registry (confluent-kafka from PyPI).

    confluent_registry.py registry URL SCHEMA_KEY
        SchemaRegistryClient: registers, looks up, checks compatibility, reads and sets config,
        deletes; prints one JSON object of what it saw.
    confluent_registry.py produce URL SCHEMA_KEY BROKERS TOPIC
        AvroSerializer and JSONSerializer (auto-registering through sluice) produce records to
        TOPIC; prints each value sent as one JSON line.

The Rust tests (crates/sluice/tests/ingest/schemas.rs, exactly_once/cluster.rs) run it and
check what it prints against sluice.
"""
import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

ORDER_V1 = json.dumps({
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [
        {"name": "type", "type": "string"},
        {"name": "event", "type": "string"},
        {"name": "userId", "type": "string"},
        {"name": "messageId", "type": "string"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "properties", "type": {"type": "record", "name": "OrderProperties", "fields": [
            {"name": "revenue", "type": "double"},
            {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD"]}},
            {"name": "coupon", "type": ["null", "string"], "default": None},
            {"name": "items", "type": {"type": "array", "items": "string"}},
        ]}},
    ],
})

# v2 adds a field with a default: BACKWARD compatible.
ORDER_V2 = json.loads(ORDER_V1)
ORDER_V2["fields"][5]["type"]["fields"].append({"name": "channel", "type": "string", "default": "web"})
ORDER_V2 = json.dumps(ORDER_V2)

# A field without a default: BACKWARD incompatible.
ORDER_BAD = json.loads(ORDER_V1)
ORDER_BAD["fields"].append({"name": "store", "type": "string"})
ORDER_BAD = json.dumps(ORDER_BAD)

PAGE_JSON = json.dumps({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "PageViewed", "type": "object",
    "properties": {
        "type": {"type": "string"}, "event": {"type": "string"},
        "anonymousId": {"type": "string"}, "messageId": {"type": "string"},
        "properties": {"type": "object", "properties": {"url": {"type": "string"}, "duration_ms": {"type": "integer"}}},
    },
    "required": ["type", "event", "anonymousId", "messageId"],
})


def client(url, key):
    return SchemaRegistryClient({"url": url + "/schemas", "basic.auth.user.info": key + ":"})


def registry(url, key):
    sr = client(url, key)
    seen = {}
    seen["id_v1"] = sr.register_schema("orders-value", Schema(ORDER_V1, "AVRO"))
    seen["id_v1_again"] = sr.register_schema("orders-value", Schema(ORDER_V1, "AVRO"))
    seen["compatible_v2"] = sr.test_compatibility("orders-value", Schema(ORDER_V2, "AVRO"))
    seen["compatible_bad"] = sr.test_compatibility("orders-value", Schema(ORDER_BAD, "AVRO"))
    try:
        sr.register_schema("orders-value", Schema(ORDER_BAD, "AVRO"))
        seen["bad_registered"] = True
    except SchemaRegistryError as error:
        seen["bad_error"] = [error.http_status_code, error.error_code, error.error_message]
    seen["id_v2"] = sr.register_schema("orders-value", Schema(ORDER_V2, "AVRO"))
    latest = sr.get_latest_version("orders-value")
    seen["latest"] = [latest.version, latest.schema_id, latest.schema.schema_type]
    seen["versions"] = sr.get_versions("orders-value")
    found = sr.lookup_schema("orders-value", Schema(ORDER_V1, "AVRO"))
    seen["lookup_v1"] = [found.version, found.schema_id]
    seen["by_id_type"] = sr.get_schema(seen["id_v1"]).schema_type
    seen["json_id"] = sr.register_schema("Page Viewed-value", Schema(PAGE_JSON, "JSON"))
    seen["json_by_id_type"] = sr.get_schema(seen["json_id"]).schema_type
    seen["subjects"] = sorted(sr.get_subjects())
    seen["types"] = sorted(sr.get_schema_types())
    seen["subjects_of_v1"] = sr.get_subjects_by_schema_id(seen["id_v1"])
    seen["global_level"] = sr.get_compatibility()
    sr.set_compatibility("orders-value", "FULL")
    seen["subject_level"] = sr.get_compatibility("orders-value")
    seen["deleted_version"] = sr.delete_version("orders-value", 1)
    seen["versions_after_delete"] = sr.get_versions("orders-value")
    try:
        sr.get_version("orders-value", 1)
    except SchemaRegistryError as error:
        seen["deleted_version_error"] = error.error_code
    seen["deleted_subject"] = sr.delete_subject("Page Viewed-value")
    seen["deleted_subject_permanently"] = sr.delete_subject("Page Viewed-value", permanent=True)
    seen["subjects_after_delete"] = sorted(sr.get_subjects())
    try:
        sr.get_schema(999999)
    except SchemaRegistryError as error:
        seen["missing_id_error"] = error.error_code
    print(json.dumps(seen))


def produce(url, key, brokers, topic):
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from confluent_kafka.schema_registry import topic_record_subject_name_strategy

    sr = client(url, key)
    # One topic carries both kinds, so each schema gets its own subject (<topic>-<record name>):
    # an Avro and a JSON schema are never compatible versions of one subject.
    conf = {"subject.name.strategy": topic_record_subject_name_strategy}
    avro = AvroSerializer(sr, ORDER_V1, conf=conf)
    page = JSONSerializer(PAGE_JSON, sr, conf=conf)
    producer = Producer({"bootstrap.servers": brokers, "message.timeout.ms": 60000})
    context = SerializationContext(topic, MessageField.VALUE)
    for n in range(20):
        if n % 2 == 0:
            value = {"type": "track", "event": "Order Completed", "userId": f"u{n}",
                     "messageId": f"order-{n}", "timestamp": 1_765_000_000_000 + n,
                     "properties": {"revenue": 10.5 + n, "currency": "EUR" if n % 4 else "USD",
                                    "coupon": None if n % 3 else f"C{n}", "items": ["a", "b"][: n % 3]}}
            data = avro(value, context)
            value["timestamp"] = "ts"  # timestamp-millis decodes to an RFC 3339 text
        else:
            value = {"type": "track", "event": "Page Viewed", "anonymousId": f"a{n}",
                     "messageId": f"page-{n}", "properties": {"url": f"/p{n}", "duration_ms": n * 100}}
            data = page(value, context)
        producer.produce(topic, value=data)
        print(json.dumps(value))
    if producer.flush(60) != 0:
        sys.exit("records were not all delivered")


if __name__ == "__main__":
    if sys.argv[1] == "registry":
        registry(*sys.argv[2:4])
    elif sys.argv[1] == "produce":
        produce(*sys.argv[2:6])
    else:
        sys.exit(__doc__)
