use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const PAGE: &str = r#"{"message_id":"m1","tenant":"shop","type":"page","name":"Home","user_id":"u1","anonymous_id":"a1","timestamp":1796651100000,"received_at":1796651100500,"sent_at":1796651100400,"properties":{"url":"/","n":1.5},"context":{"ip":"10.0.0.1"},"_metadata":{"bundled":[]}}"#;
const TRACK: &str = r#"{"message_id":"m2","tenant":"shop","type":"track","event":"Order Completed","anonymous_id":"a2","timestamp":1796651101000,"received_at":1796651101000,"properties":{"revenue":12.5}}"#;

#[test]
fn events_round_trip_through_a_parquet_file_field_by_field() {
    let mut rows = Rows::default();
    for (offset, json) in [(7, PAGE), (9, TRACK)] {
        let event: Event<'_> = serde_json::from_str(json).unwrap();
        rows.push(2, offset, &Fields::of(&event));
    }
    assert_eq!(rows.len(), 2);
    let file = write(rows, Vec::new()).unwrap();

    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.schema(), schema());
    let text = |name: &str| -> Vec<Option<String>> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|value| value.map(str::to_owned))
            .collect()
    };
    let some = |value: &str| Some(value.to_owned());
    assert_eq!(text("message_id"), [some("m1"), some("m2")]);
    assert_eq!(text("type"), [some("page"), some("track")]);
    assert_eq!(text("event"), [None, some("Order Completed")]);
    assert_eq!(text("name"), [some("Home"), None]);
    assert_eq!(text("user_id"), [some("u1"), None]);
    assert_eq!(text("anonymous_id"), [some("a1"), some("a2")]);
    assert_eq!(
        text("properties"),
        [some(r#"{"url":"/","n":1.5}"#), some(r#"{"revenue":12.5}"#)]
    );
    assert_eq!(text("context"), [some(r#"{"ip":"10.0.0.1"}"#), None]);
    assert_eq!(text("metadata"), [some(r#"{"bundled":[]}"#), None]);
    let offsets: Vec<i64> = batch
        .column_by_name("log_offset")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(offsets, [7, 9]);
    let times = |name: &str| -> Vec<Option<i64>> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect()
    };
    assert_eq!(
        times("timestamp"),
        [Some(1796651100000), Some(1796651101000)]
    );
    assert_eq!(times("sent_at"), [Some(1796651100400), None]);
    assert_eq!(
        batch
            .schema()
            .field_with_name("timestamp")
            .unwrap()
            .data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
}

/// A user's rows (by user id or anonymous id) leave a file; the rest stay, in order, field by
/// field; a file of no such row is not rewritten, one of only such rows is left to be deleted.
#[test]
fn a_users_rows_are_filtered_out_of_a_file() {
    let mut rows = Rows::default();
    let mut events = Vec::new();
    for i in 0..10 {
        let json = match i % 3 {
            0 => format!(
                r#"{{"message_id":"m{i}","tenant":"shop","type":"track","event":"E","user_id":"u1","anonymous_id":"a{i}","timestamp":{i},"received_at":{i}}}"#
            ),
            1 => format!(
                r#"{{"message_id":"m{i}","tenant":"shop","type":"track","event":"E","anonymous_id":"u1","timestamp":{i},"received_at":{i}}}"#
            ),
            _ => format!(
                r#"{{"message_id":"m{i}","tenant":"shop","type":"track","event":"E","user_id":"u2","anonymous_id":"a{i}","timestamp":{i},"received_at":{i},"properties":{{"n":{i}}}}}"#
            ),
        };
        events.push(json);
    }
    for (offset, json) in events.iter().enumerate() {
        rows.push(
            0,
            offset as u64,
            &Fields::of(&serde_json::from_str(json).unwrap()),
        );
    }
    let file = bytes::Bytes::from(write(rows, Vec::new()).unwrap());

    let filtered = without_user(file.clone(), "u1").unwrap();
    assert_eq!((filtered.rows, filtered.removed), (10, 7));
    let rewritten = bytes::Bytes::from(filtered.rewritten.unwrap());
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(rewritten)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut expected = Rows::default();
    for offset in [2, 5, 8] {
        expected.push(
            0,
            offset,
            &Fields::of(&serde_json::from_str(&events[offset as usize]).unwrap()),
        );
    }
    assert_eq!(
        arrow_select::concat::concat_batches(&schema(), &batches).unwrap(),
        expected.finish()
    );

    let untouched = without_user(file.clone(), "nobody").unwrap();
    assert_eq!(
        (untouched.rows, untouched.removed, untouched.rewritten),
        (10, 0, None)
    );
    let mut theirs = Rows::default();
    for offset in [0, 1, 3] {
        theirs.push(
            0,
            offset,
            &Fields::of(&serde_json::from_str(&events[offset as usize]).unwrap()),
        );
    }
    let theirs = bytes::Bytes::from(write(theirs, Vec::new()).unwrap());
    let all = without_user(theirs, "u1").unwrap();
    assert_eq!((all.rows, all.removed, all.rewritten), (3, 3, None));
}
