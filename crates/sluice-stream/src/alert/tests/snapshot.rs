//! Checkpoints: a run restored from a snapshot taken anywhere gives the transitions of the
//! run that never stopped.

use super::*;
use proptest::prelude::*;

/// One rule per feature that keeps state: FOR and resolve_after with a key limit, previous
/// and ranges, anomaly history, absent, live windows.
const RULES: [&str; 5] = [
    "CREATE ALERT high ON api BY KEY LIMIT 3 WHEN errors > 50 FOR '2m' WITH (resolve_after = 2)",
    "CREATE ALERT surge ON api BY KEY WHEN change(errors, previous(errors)) > 50
         OR sum(latency, '5m') > 900",
    "CREATE ALERT odd ON api BY KEY WHEN anomaly(errors) WITH (history = 10)",
    "CREATE ALERT quiet ON api BY KEY WHEN absent FOR '3m'",
    "CREATE ALERT band ON api BY KEY WHEN latency BETWEEN 100 AND 200 WITH (on = 'live')",
];

#[derive(Debug, Clone)]
enum Input {
    /// A window of key `key`, `gap` minutes after its previous one.
    Window {
        key: usize,
        gap: i64,
        errors: Option<u8>,
        latency: u16,
        is_final: bool,
    },
    /// The watermark moves `ahead` minutes past the newest window.
    Watermark { ahead: i64 },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (
            0..4usize,
            0..3i64,
            proptest::option::weighted(0.9, any::<u8>()),
            0..400u16,
            any::<bool>(),
        )
            .prop_map(|(key, gap, errors, latency, is_final)| Input::Window {
                key,
                gap,
                errors,
                latency,
                is_final,
            }),
        1 => (0..6i64).prop_map(|ahead| Input::Watermark { ahead }),
    ]
}

/// Feeds inputs `from..to`; `next` is each key's next window, `newest` the newest window end.
struct Driver {
    next: [i64; 4],
    newest: i64,
}

impl Driver {
    fn feed(&mut self, alert: &mut Evaluator, inputs: &[Input], out: &mut Vec<Transition>) {
        for input in inputs {
            match *input {
                Input::Window {
                    key: index,
                    gap,
                    errors,
                    latency,
                    is_final,
                } => {
                    let start = self.next[index] + gap;
                    // A live version stays on its window; the final one moves on.
                    self.next[index] = if is_final { start + 1 } else { start };
                    self.newest = self.newest.max(start + 1);
                    let values = [Some(1.0), errors.map(f64::from), Some(f64::from(latency))];
                    let route = format!("/{index}");
                    alert.window(&key(&route, "eu"), minute(start), &values, is_final, out);
                }
                Input::Watermark { ahead } => {
                    alert.watermark((self.newest + ahead) * MINUTE, out);
                }
            }
        }
    }
}

fn replay(
    rule: &str,
    inputs: &[Input],
    split: Option<usize>,
) -> (Vec<Transition>, EvaluatorSnapshot) {
    let plan = metric(API);
    let mut alert = evaluator(rule, &plan);
    let mut driver = Driver {
        next: [0; 4],
        newest: 0,
    };
    let mut out = Vec::new();
    let Some(split) = split else {
        driver.feed(&mut alert, inputs, &mut out);
        return (out, alert.snapshot());
    };
    driver.feed(&mut alert, &inputs[..split], &mut out);
    let saved = serde_json::to_string(&alert.snapshot()).unwrap();
    drop(alert);
    let mut restored = evaluator(rule, &plan);
    restored
        .restore(serde_json::from_str(&saved).unwrap())
        .unwrap();
    driver.feed(&mut restored, &inputs[split..], &mut out);
    (out, restored.snapshot())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_restored_evaluator_continues_exactly(
        inputs in proptest::collection::vec(input(), 1..400),
        split in any::<proptest::sample::Index>(),
    ) {
        let split = split.index(inputs.len() + 1);
        for rule in RULES {
            let (straight, straight_state) = replay(rule, &inputs, None);
            let (restored, restored_state) = replay(rule, &inputs, Some(split));
            prop_assert_eq!(&straight, &restored, "{}", rule);
            prop_assert_eq!(straight_state, restored_state, "{}", rule);
            // Sequences count each key's transitions from 1.
            let mut counts = std::collections::HashMap::new();
            for transition in &straight {
                let count = counts.entry(transition.key.clone()).or_insert(0u64);
                *count += 1;
                prop_assert_eq!(transition.sequence, *count);
            }
        }
    }
}

#[test]
fn a_snapshot_of_another_rule_is_refused() {
    let plan = metric(API);
    let threshold = evaluator(RULES[0], &plan);
    let mut anomaly = evaluator(RULES[2], &plan);
    let error = anomaly
        .restore(threshold.snapshot())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "cannot restore metric \"api\": alert rule odd: the snapshot is of rule high"
    );
    let total = metric(TOTAL);
    let mut of_the_total = evaluator("CREATE ALERT high ON total WHEN errors > 1", &total);
    let error = of_the_total
        .restore(threshold.snapshot())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "cannot restore metric \"total\": alert rule high: the snapshot is of the rule with BY \
         KEY; start it without a snapshot"
    );
}

#[test]
fn an_edited_rule_keeps_each_keys_state_and_sequence() {
    let plan = metric(API);
    let mut before = evaluator("CREATE ALERT high ON api BY KEY WHEN errors > 50", &plan);
    let mut out = Vec::new();
    let values = [Some(1.0), Some(80.0), Some(1.0)];
    before.window(&key("/a", "eu"), minute(0), &values, true, &mut out);
    before.window(
        &key("/a", "eu"),
        minute(1),
        &[Some(1.0), Some(10.0), None],
        true,
        &mut out,
    );
    before.window(&key("/a", "eu"), minute(2), &values, true, &mut out);
    assert_eq!(out.len(), 3);
    // Now it reads a day back: the history is new, the state and numbering are kept.
    let mut after = evaluator(
        "CREATE ALERT high ON api BY KEY WHEN errors > offset(errors, '1d')",
        &plan,
    );
    after.restore(before.snapshot()).unwrap();
    assert_eq!(
        after.states().collect::<Vec<_>>(),
        [(r#"{"route":"/a","region":"eu"}"#, AlertState::Firing)]
    );
    out.clear();
    after.window(&key("/a", "eu"), minute(3), &values, true, &mut out);
    assert_eq!(
        summary(&out),
        [(AlertState::Firing, AlertState::Resolved, 3, 4)]
    );
}
