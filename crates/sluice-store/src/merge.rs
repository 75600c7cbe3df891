//! Merging states into final rows. A final row gathers every partition's state of one window;
//! the store merges inside the transaction that writes it, so two partitions closing one window
//! at once never lose each other's part. States stay the engine's encoding: decoded, merged and
//! encoded again with the engine's own functions (which check each state's checksum and kinds).

use sluice_stream::agg::PartialState;

/// `into` with `other` merged in, encoded; or why they do not merge.
pub(crate) fn merged_state(into: &[u8], other: &[u8]) -> Result<Vec<u8>, String> {
    let mut merged = PartialState::decode(into, None).map_err(|e| e.to_string())?;
    let other = PartialState::decode(other, None).map_err(|e| e.to_string())?;
    merged.merge(&other).map_err(|e| e.to_string())?;
    Ok(merged.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_stream::agg::AggState;

    fn counts(n: u64, sum: i64) -> Vec<u8> {
        PartialState {
            states: vec![AggState::Count(n), AggState::Count(sum as u64)],
        }
        .encode()
    }

    #[test]
    fn states_merge_and_damage_is_refused() {
        let merged = merged_state(&counts(2, 5), &counts(3, 1)).unwrap();
        assert_eq!(merged, counts(5, 6));
        let mut damaged = counts(1, 1);
        damaged[2] ^= 0xff;
        let error = merged_state(&counts(1, 1), &damaged).unwrap_err();
        assert!(error.contains("checksum"), "{error}");
        let one = PartialState {
            states: vec![AggState::Count(1)],
        }
        .encode();
        assert!(merged_state(&one, &counts(1, 1)).is_err(), "shapes differ");
    }
}
