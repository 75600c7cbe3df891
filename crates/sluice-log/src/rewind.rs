//! Committed positions the log no longer backs: what a reader that commits its positions (a
//! metric or stream pipeline, the archive) does after a repair cut the log.
//!
//! A position is an offset *and* the log epoch it belongs to. When recovery cuts a torn tail
//! (`ack = "write"` and a power loss, a damaged active segment), the partition's end moves
//! back and a new epoch starts there: new records get the offsets that were cut. A pipeline
//! partition that had committed past that start would skip the new records, so at each claim
//! it compares its position with the log's epochs and rewinds to the start of the earliest
//! epoch begun since — or to the log's end, if the position is beyond it with no epoch to say
//! why (whole batches lost at a power loss leave nothing for recovery to cut; a log replaced
//! behind sluice's back). The first claim of a runner launched at start-up measures against
//! the end as it was before anything was appended (`serve` starts its collector after its
//! pipelines, but the claims run in tasks that may come later). What was counted from the lost
//! range stays counted (those events happened); how many offsets that was is reported (ERROR
//! log, the status's `lost_offsets`, `sluice_pipeline_lost_offsets_total`). `sluice replay`
//! recomputes the results from what the log holds now.

use crate::EpochStart;

/// Where a pipeline partition whose position is `offset` of log epoch `log_epoch` must resume
/// instead, given the source partition's `epochs` (oldest first) and `end` offset; `None`
/// when the position stands.
pub fn rewind_target(offset: u64, log_epoch: u32, epochs: &[EpochStart], end: u64) -> Option<u64> {
    let cut = epochs
        .iter()
        .filter(|started| started.epoch > log_epoch)
        .map(|started| started.start_offset)
        .min()
        .unwrap_or(u64::MAX);
    let target = cut.min(end);
    (target < offset).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(list: &[(u32, u64)]) -> Vec<EpochStart> {
        list.iter()
            .map(|&(epoch, start_offset)| EpochStart {
                epoch,
                start_offset,
            })
            .collect()
    }

    #[test]
    fn a_position_in_the_current_epoch_stands() {
        assert_eq!(rewind_target(500, 0, &epochs(&[(0, 0)]), 800), None);
        assert_eq!(rewind_target(800, 0, &epochs(&[(0, 0)]), 800), None);
        assert_eq!(
            rewind_target(500, 2, &epochs(&[(0, 0), (1, 100), (2, 300)]), 800),
            None
        );
    }

    #[test]
    fn a_cut_before_the_position_rewinds_to_the_new_epoch_start() {
        // Committed at 500 in epoch 0; a repair cut the log back to 420 (epoch 1), and new
        // records have taken offsets 420.. since.
        assert_eq!(
            rewind_target(500, 0, &epochs(&[(0, 0), (1, 420)]), 900),
            Some(420)
        );
        // The earliest epoch begun since the position's counts.
        assert_eq!(
            rewind_target(500, 0, &epochs(&[(0, 0), (1, 450), (2, 470)]), 900),
            Some(450)
        );
        assert_eq!(
            rewind_target(500, 1, &epochs(&[(0, 0), (1, 450), (2, 470)]), 900),
            Some(470)
        );
    }

    #[test]
    fn a_cut_after_the_position_leaves_it_alone() {
        assert_eq!(
            rewind_target(300, 0, &epochs(&[(0, 0), (1, 420)]), 900),
            None
        );
        assert_eq!(
            rewind_target(420, 0, &epochs(&[(0, 0), (1, 420)]), 900),
            None
        );
    }

    #[test]
    fn a_position_beyond_the_end_goes_back_to_the_end() {
        assert_eq!(rewind_target(500, 0, &epochs(&[(0, 0)]), 350), Some(350));
        assert_eq!(
            rewind_target(500, 0, &epochs(&[(0, 0), (1, 420)]), 380),
            Some(380)
        );
    }
}
