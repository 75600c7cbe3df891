//! Message ids. Clients may send their own `messageId` (it is how retries are deduplicated);
//! when they do not, sluice generates a UUIDv7: unique, and ordered by generation time, so ids
//! sort roughly by arrival and index well.

/// A fresh, time-ordered message id (UUIDv7, hyphenated lowercase).
pub fn generate_message_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_time_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| generate_message_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            ids, sorted,
            "UUIDv7 ids generated in sequence sort in that sequence"
        );
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert_eq!(ids[0].len(), 36);
    }
}
