//! Arbitrary bytes through the file log's decoders: as a whole segment, as the records of a
//! frame whose checksum is valid (so record decoding is reached, not just the CRC check), as
//! the bytes after damage that salvage searches for the next intact batch, and as an index,
//! epoch or gap file. Every input must decode or give an error with a reason, never panic;
//! whatever decodes must re-encode to records that decode the same.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_log::file::format::{
    BATCH_HEADER_LEN, Search, check_crc, decode_records, decode_segment, encode_batch,
    find_frame, peek_header, seal_frame,
};
use sluice_log::file::index::decode_index;
use sluice_log::file::{epochs, gaps};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_segment(data) {
        for pair in records.windows(2) {
            assert_eq!(pair[0].offset + 1, pair[1].offset, "segment offsets are contiguous");
        }
    }

    if data.len() >= BATCH_HEADER_LEN {
        let mut frame = data.to_vec();
        frame[16] = 1; // magic
        frame[17] = 0; // attributes
        seal_frame(&mut frame);
        if let Ok(Some(header)) = peek_header(&frame) {
            assert_eq!(header.frame_len, frame.len());
            let frame = Bytes::from(frame);
            let mut stored = Vec::new();
            if decode_records(&frame, &header, 0, &mut stored).is_ok() {
                assert_eq!(stored.len(), header.record_count as usize);
                let records: Vec<_> = stored.into_iter().map(|s| s.record).collect();
                let mut again = Vec::new();
                encode_batch(&records, &mut again);
                let header = peek_header(&again).unwrap().unwrap();
                let mut decoded = Vec::new();
                decode_records(&Bytes::from(again), &header, 0, &mut decoded).unwrap();
                let decoded: Vec<_> = decoded.into_iter().map(|s| s.record).collect();
                assert_eq!(decoded, records);
            }
        }
    }

    // Whatever the salvage search finds is a whole frame inside the input that checks out.
    for at_eof in [true, false] {
        match find_frame(data, 0, at_eof, |_, _| true) {
            Search::Found { at, header } => {
                let frame = &data[at..at + header.frame_len];
                assert!(check_crc(frame, &header).is_ok());
            }
            Search::Incomplete { at, frame_len } => {
                assert!(!at_eof && at + frame_len > data.len());
            }
            Search::NotFound { next } => assert!(next <= data.len().max(1)),
        }
    }

    let _ = decode_index(data, 0);
    if let Ok(list) = epochs::decode(data) {
        assert_eq!(epochs::encode(&list), data);
    }
    if let Ok(list) = gaps::decode(data) {
        assert_eq!(gaps::encode(&list), data);
    }
});
