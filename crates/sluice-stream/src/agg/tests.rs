use super::*;
use proptest::prelude::*;

const KINDS: [AggregateKind; 8] = [
    AggregateKind::CountStar,
    AggregateKind::Count,
    AggregateKind::CountDistinct,
    AggregateKind::Sum,
    AggregateKind::Min,
    AggregateKind::Max,
    AggregateKind::Avg,
    AggregateKind::ApproxPercentile { quantile: 0.9 },
];

/// The input each aggregate takes from an event carrying `value` (or nothing).
fn inputs(value: Option<(i64, u8)>) -> Vec<Input> {
    let number = value.map(|(m, s)| Decimal::new(i128::from(m), s).unwrap());
    KINDS
        .iter()
        .map(|kind| match (kind, number) {
            (AggregateKind::CountStar, _) => Input::Present,
            (_, None) => Input::Null,
            (AggregateKind::Count, Some(_)) => Input::Present,
            (AggregateKind::CountDistinct, Some(n)) => Input::Hash(xxhash_rust::xxh3::xxh3_64(
                n.normalized().to_string().as_bytes(),
            )),
            (_, Some(n)) => Input::Number(n),
        })
        .collect()
}

fn fold(values: &[Option<(i64, u8)>]) -> PartialState {
    let mut state = PartialState::new(&KINDS);
    for value in values {
        for (agg, input) in state.states.iter_mut().zip(inputs(*value)) {
            agg.update(input);
        }
    }
    state
}

fn value() -> impl Strategy<Value = Option<(i64, u8)>> {
    prop::option::weighted(0.9, (-1_000_000i64..1_000_000, 0u8..4))
}

proptest! {
    #[test]
    fn partials_merge_exactly_as_if_computed_together(
        values in prop::collection::vec(value(), 0..400),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let whole = fold(&values);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(values.len() + 1)).collect();
        cuts.sort();
        let mut merged = PartialState::new(&KINDS);
        let mut start = 0;
        for end in cuts.into_iter().chain([values.len()]).rev().collect::<Vec<_>>().into_iter().rev() {
            merged.merge(&fold(&values[start..end.max(start)])).unwrap();
            start = end.max(start);
        }
        prop_assert_eq!(&merged, &whole);
        let encoded = whole.encode();
        prop_assert!(encoded.len() <= whole.encoded_len_bound(), "{} > {}", encoded.len(), whole.encoded_len_bound());
        let mut fresh = Vec::new();
        whole.encode_into(&mut fresh);
        prop_assert!(fresh.capacity() < 2 * whole.encoded_len_bound().max(8), "the buffer grew while encoding");
        let mut reused = vec![0xA5; 5_000];
        whole.encode_into(&mut reused);
        prop_assert_eq!(&reused, &encoded, "encoding into a used buffer");
        let mut appended = vec![0x5A; 7];
        whole.encode_append(&mut appended);
        let capacity = appended.capacity();
        whole.encode_append(&mut appended);
        prop_assert_eq!(&appended[..7], &[0x5A; 7][..], "the bytes before are kept");
        prop_assert_eq!(&appended[7..7 + encoded.len()], &encoded[..], "appended");
        prop_assert_eq!(&appended[7 + encoded.len()..], &encoded[..], "appended again");
        prop_assert!(capacity >= 7 + encoded.len());
        let decoded = PartialState::decode(&encoded, Some(&KINDS)).unwrap();
        prop_assert_eq!(&decoded, &whole);
    }

    #[test]
    fn corrupt_bytes_are_rejected_never_panic(values in prop::collection::vec(value(), 0..50), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = fold(&values).encode();
        let position = flip.index(bytes.len());
        bytes[position] ^= 1 << bit;
        prop_assert!(PartialState::decode(&bytes, Some(&KINDS)).is_err());
        prop_assert!(PartialState::decode(&bytes[..position], None).is_err());
    }
}

#[test]
fn the_encoding_bound_holds_for_extreme_decimals() {
    let mut state = PartialState::new(&KINDS);
    for mantissa in [i128::MAX / 2, i128::MIN / 2] {
        let number = Decimal::new(mantissa, 0).unwrap();
        for (agg, kind) in state.states.iter_mut().zip(KINDS) {
            agg.update(match kind {
                AggregateKind::CountStar | AggregateKind::Count => Input::Present,
                AggregateKind::CountDistinct => Input::Hash(u64::MAX - mantissa as u64),
                _ => Input::Number(number),
            });
        }
    }
    let encoded = state.encode();
    assert!(encoded.len() <= state.encoded_len_bound());
    assert_eq!(PartialState::decode(&encoded, Some(&KINDS)).unwrap(), state);
}

#[test]
fn finalized_values_follow_sql() {
    let values = [Some((1999, 2)), None, Some((-500, 2)), Some((1999, 2))];
    let state = fold(&values);
    let out: Vec<String> = state
        .finalize(&KINDS)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(out[0], "4", "COUNT(*)");
    assert_eq!(out[1], "3", "COUNT(x)");
    assert_eq!(out[2], "2", "COUNT(DISTINCT x)");
    assert_eq!(out[3], "34.98", "SUM");
    assert_eq!(out[4], "-5.00", "MIN");
    assert_eq!(out[5], "19.99", "MAX");
    assert_eq!(out[6], "11.660000", "AVG");
    let p90: f64 = out[7].parse().unwrap();
    assert!((p90 - 19.99).abs() <= 0.01 * 19.99, "p90 {p90}");
    let empty = fold(&[None]);
    let out: Vec<String> = empty
        .finalize(&KINDS)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(out, ["1", "0", "0", "NULL", "NULL", "NULL", "NULL", "NULL"]);
}

#[test]
fn sums_report_overflow_instead_of_wrapping() {
    let mut sum = AggState::new(&AggregateKind::Sum);
    let big = Decimal::new(i128::MAX / 2 + 1, 0).unwrap();
    sum.update(Input::Number(big));
    sum.update(Input::Number(big));
    let AggState::Sum(inner) = &sum else { panic!() };
    assert!(inner.overflowed());
    assert_eq!(sum.finalize(&AggregateKind::Sum), OutputValue::Overflow);
    assert_eq!(sum.finalize(&AggregateKind::Sum).to_string(), "overflow");
    sum.update(Input::Number(Decimal::from_i64(1)));
    let AggState::Sum(inner) = &sum else { panic!() };
    assert!(inner.overflowed(), "overflow is sticky");

    // Merged into another partition's partial, in either order, it stays visible.
    let mut other = AggState::new(&AggregateKind::Sum);
    other.update(Input::Number(Decimal::from_i64(7)));
    let mut merged = other.clone();
    merged.merge(&sum).unwrap();
    assert_eq!(merged.finalize(&AggregateKind::Sum), OutputValue::Overflow);
    let mut merged = sum.clone();
    merged.merge(&other).unwrap();
    assert_eq!(merged.finalize(&AggregateKind::Sum), OutputValue::Overflow);

    // So does an average whose sum overflowed.
    let mut avg = AggState::new(&AggregateKind::Avg);
    avg.update(Input::Number(big));
    avg.update(Input::Number(big));
    assert_eq!(avg.finalize(&AggregateKind::Avg), OutputValue::Overflow);
}

#[test]
fn an_overflowed_sum_stored_by_an_earlier_version_decodes_as_overflow() {
    // Version 1 bytes as stored before overflow was shown: one sum state, flags = overflowed.
    let mut stored = vec![1, 1, 2, 2];
    stored.extend_from_slice(&crc32c::crc32c(&stored).to_le_bytes());
    let partial = PartialState::decode(&stored, Some(&[AggregateKind::Sum])).unwrap();
    assert_eq!(
        partial.finalize([&AggregateKind::Sum]),
        [OutputValue::Overflow]
    );
    assert_eq!(partial.encode(), stored, "the encoding is unchanged");
}

#[test]
fn numbers_out_of_range_are_not_aggregated() {
    for kind in [
        AggregateKind::Sum,
        AggregateKind::Min,
        AggregateKind::Max,
        AggregateKind::Avg,
        AggregateKind::CountDistinct,
        AggregateKind::ApproxPercentile { quantile: 0.5 },
    ] {
        let mut state = AggState::new(&kind);
        state.update(Input::OutOfRange);
        assert_eq!(state, AggState::new(&kind), "{kind:?}");
    }
}

#[test]
fn decoding_names_what_is_wrong() {
    let good = fold(&[Some((5, 0))]).encode();
    let mut version = good.clone();
    version[0] = 9;
    let body_len = version.len() - 4;
    let checksum = crc32c::crc32c(&version[..body_len]).to_le_bytes();
    version[body_len..].copy_from_slice(&checksum);
    let error = PartialState::decode(&version, None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("format version 9 is not supported"),
        "{error}"
    );
    let mut flipped = good.clone();
    flipped[2] ^= 0xff;
    let error = PartialState::decode(&flipped, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("checksum mismatch"), "{error}");
    let error = PartialState::decode(&good, Some(&KINDS[..2]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("do not match the metric's aggregates"),
        "{error}"
    );
    let error = PartialState::decode(&[1, 2], None).unwrap_err().to_string();
    assert!(error.contains("too few"), "{error}");
}
