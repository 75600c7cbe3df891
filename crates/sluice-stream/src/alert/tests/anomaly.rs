//! `anomaly(…)` on a synthetic week of one-minute windows: a daily sine with noise, with
//! and without an injected spike and drop on day 7.

use super::*;
use crate::alert::baseline::{History, band};
use crate::alert::check::compile;

const DAY: i64 = 1440;
const WEEK: i64 = 7 * DAY;

/// Day 7, 10:00 to 10:10: three times the traffic.
const SPIKE: std::ops::Range<i64> = 6 * DAY + 600..6 * DAY + 610;

/// Day 7, 16:40 to 16:50: a fifth of it.
const DROP: std::ops::Range<i64> = 6 * DAY + 1000..6 * DAY + 1010;

const SEEDS: [u64; 3] = [0x9E37_79B9_7F4A_7C15, 12_345, 987_654_321];

const RULE: &str = "CREATE ALERT traffic_odd ON traffic WHEN anomaly(requests) \
                    WITH (seasonality = '1d')";

fn traffic() -> MetricPlan {
    metric(
        "CREATE METRIC traffic AS SELECT COUNT(*) AS requests FROM events
         GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
    )
}

/// xorshift64: deterministic noise without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

#[derive(Clone, Copy)]
enum Noise {
    /// ±10%, uniform.
    Uniform,
    /// The mean of four uniforms, ±20% at most: close to a normal with σ ≈ 5.8%.
    NearNormal,
}

/// 1000 requests a minute on average, ±50% over the day, with noise.
fn week(seed: u64, noise: Noise, injected: bool) -> Vec<f64> {
    let mut random = XorShift(seed);
    (0..WEEK)
        .map(|minute| {
            let phase = 2.0 * std::f64::consts::PI * (minute % DAY) as f64 / DAY as f64;
            let base = 1000.0 * (1.0 + 0.5 * phase.sin());
            let noise = match noise {
                Noise::Uniform => 0.1 * random.unit(),
                Noise::NearNormal => {
                    0.1 * (random.unit() + random.unit() + random.unit() + random.unit()) / 2.0
                }
            };
            let factor = match injected {
                true if SPIKE.contains(&minute) => 3.0,
                true if DROP.contains(&minute) => 0.2,
                _ => 1.0,
            };
            base * (1.0 + noise) * factor
        })
        .collect()
}

fn run(rule: &str, values: &[f64]) -> Vec<Transition> {
    let mut alert = evaluator(rule, &traffic());
    let mut out = Vec::new();
    for (index, value) in values.iter().enumerate() {
        alert.window(&[], minute(index as i64), &[Some(*value)], true, &mut out);
    }
    out
}

fn fired_at(transitions: &[Transition]) -> Vec<i64> {
    transitions
        .iter()
        .filter(|t| t.to == AlertState::Firing)
        .map(|t| t.at_ms / MINUTE - 1)
        .collect()
}

/// The largest `|value - median| / half_width` over the evaluations of a week: how close the
/// noise came to the band (an alert at more than 1).
fn closest_approach(rule: &str, values: &[f64]) -> f64 {
    let program = compile(&super::rule(rule), &traffic()).unwrap();
    let mut history = History::new(program.depth, program.columns.len());
    let mut scratch = Vec::new();
    let mut worst: f64 = 0.0;
    for (index, value) in values.iter().enumerate() {
        let window = index as i64;
        history.put(window, &[Some(*value)], &program.columns);
        if let Some(band) = band(&history, window, 0, &program.anomaly, &mut scratch) {
            worst = worst.max((value - band.median).abs() / band.half_width);
        }
    }
    worst
}

#[test]
fn anomaly_finds_a_spike_and_a_drop_in_a_seasonal_week_and_nothing_else() {
    for seed in SEEDS {
        let clean = week(seed, Noise::Uniform, false);
        let false_alerts = fired_at(&run(RULE, &clean));
        let approach = closest_approach(RULE, &clean);
        let injected = run(RULE, &week(seed, Noise::Uniform, true));
        let fired = fired_at(&injected);
        println!(
            "seed {seed:#x}: clean week {} alerts (closest approach {approach:.2} of the band's \
             half-width); injected week fired at {fired:?}",
            false_alerts.len()
        );
        assert!(false_alerts.len() <= 1, "{false_alerts:?}");
        assert!(approach < 0.9, "{approach}");
        let in_spike = fired.iter().filter(|m| SPIKE.contains(m)).count();
        let in_drop = fired.iter().filter(|m| DROP.contains(m)).count();
        assert_eq!((in_spike, in_drop), (1, 1), "{fired:?}");
        assert_eq!(fired.len(), 2 + false_alerts.len(), "{fired:?}");
        // Each fires on its first minute and resolves as it ends.
        assert!(fired.contains(&SPIKE.start) && fired.contains(&DROP.start));
        let resolved: Vec<i64> = injected
            .iter()
            .filter(|t| t.to == AlertState::Resolved)
            .map(|t| t.at_ms / MINUTE - 1)
            .collect();
        assert!(resolved.contains(&SPIKE.end) && resolved.contains(&DROP.end));
    }
}

#[test]
fn noise_with_normal_tails_needs_a_higher_sensitivity() {
    let strict = "CREATE ALERT traffic_odd ON traffic WHEN anomaly(requests) \
                  WITH (seasonality = '1d', sensitivity = 5)";
    for seed in SEEDS {
        let clean = week(seed, Noise::NearNormal, false);
        let at_default = fired_at(&run(RULE, &clean)).len();
        let at_five = fired_at(&run(strict, &clean));
        let injected = fired_at(&run(strict, &week(seed, Noise::NearNormal, true)));
        println!(
            "seed {seed:#x}, near-normal noise: clean week {at_default} alerts at sensitivity \
             3, {} at 5; injected week at 5 fired at {injected:?}",
            at_five.len()
        );
        assert!(at_five.len() <= 1, "{at_five:?}");
        assert!(injected.contains(&SPIKE.start) && injected.contains(&DROP.start));
    }
}

#[test]
fn baseline_ranges_read_what_window_by_window_reads() {
    use crate::alert::baseline::History;
    use crate::alert::check::AnomalyShape;
    // A ring of 50 windows × 2 columns, written with gaps (NaN) and wrapped several times.
    let mut history = History::new(50, 2);
    for window in 100..237 {
        if window % 7 == 3 {
            continue; // missing
        }
        let value = (window % 11 == 0)
            .then_some(f64::NAN)
            .or(Some(window as f64));
        history.put(window, &[value, Some(-(window as f64))], &[0, 1]);
    }
    for (from, to) in [
        (150, 236),
        (180, 200),
        (230, 260),
        (100, 120),
        (236, 236),
        (201, 199),
    ] {
        for column in 0..3 {
            let mut ranged = Vec::new();
            history.extend_range(from, to, column, &mut ranged);
            let one_by_one: Vec<f64> = (from..=to)
                .filter_map(|window| history.get(window, column))
                .collect();
            assert_eq!(ranged, one_by_one, "{from}..={to}, column {column}");
        }
    }
    for period in [0, 24] {
        let shape = AnomalyShape {
            options: AnomalyOptions {
                history: 30,
                seasons: 3,
                ..AnomalyOptions::default()
            },
            period,
            spread: 4,
        };
        let mut from_ranges: Vec<i64> = shape.ranges().flat_map(|(a, b)| a..=b).collect();
        let mut backs: Vec<i64> = shape.backs().collect();
        from_ranges.sort_unstable();
        backs.sort_unstable();
        assert_eq!(from_ranges, backs, "period {period}");
    }
}
