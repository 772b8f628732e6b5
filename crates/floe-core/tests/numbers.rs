//! Properties of number sequences: whatever format the validator accepts, two different
//! (period, counter) pairs never render the same number; a padded counter never widens; the
//! period of a number is the date of its instant in the sequence's zone.

use std::collections::HashMap;

use floe_core::numbers::{Reset, Sequence, Zone};
use proptest::prelude::*;

/// Date parts, good and bad: fixed and variable width, too coarse, time of day, ISO weeks.
const DATES: &[&str] = &[
    "{date}",
    "{date:%Y}",
    "{date:%Y%m}",
    "{date:%m}",
    "{date:%d}",
    "{date:%-d}",
    "{date:%-m}",
    "{date:%y%m%d}",
    "{date:%H}",
    "{date:%-H}",
    "{date:%B}",
    "{date:%j}",
    "{date:%G%V%u}",
    "{date:%F}",
];
const LITERALS: &[&str] = &["", "-", "ORD", "1", "/"];
const SEQS: &[&str] = &["{seq}", "{seq}", "{seq:01}", "{seq:02}", "{seq:06}"];
const ZONES: &[&str] = &[
    "UTC",
    "Asia/Shanghai",
    "America/New_York",
    "+05:45",
    "-11:00",
];
const RESETS: [Reset; 4] = [Reset::Never, Reset::Year, Reset::Month, Reset::Day];

/// 2000-01-01T00:00:00Z and 2030-12-31T00:00:00Z, the validator's sample range.
const FROM_MS: u64 = 946_684_800_000;
const TO_MS: u64 = 1_924_905_600_000;

/// A format: a few pieces, a date or nothing right against the counter on each side (where
/// widths can run together), the counter, and a few more pieces.
fn format() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(DATES).prop_map(str::to_owned),
        prop::sample::select(LITERALS).prop_map(str::to_owned),
    ];
    let next_to = prop_oneof![
        3 => prop::sample::select(DATES).prop_map(str::to_owned),
        1 => Just(String::new()),
    ];
    (
        prop::collection::vec(piece.clone(), 0..2),
        next_to.clone(),
        prop::sample::select(SEQS),
        next_to,
        prop::collection::vec(piece, 0..2),
    )
        .prop_map(|(before, left, seq, right, after)| {
            format!("{}{left}{seq}{right}{}", before.concat(), after.concat())
        })
}

/// Mostly `never`, which accepts any date, so the width rule is what gets tested.
fn reset() -> impl Strategy<Value = Reset> {
    prop_oneof![3 => Just(Reset::Never), 1 => prop::sample::select(&RESETS[..])]
}

/// A base instant anywhere in the sample range, and draws within 40 days after it (hour steps,
/// small counters), so weak formats get the chance to collide: day 1 number 11 against day 11
/// number 1, two days of one month, the hours of one day.
fn draws() -> impl Strategy<Value = (u64, Vec<(u64, u64)>)> {
    (
        FROM_MS..TO_MS - 40 * 86_400_000,
        prop::collection::vec((0u64..40 * 24, 1u64..40), 300),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn accepted_formats_never_collide(
        format in format(),
        reset in reset(),
        zone in prop::sample::select(ZONES),
        (base, draws) in draws(),
    ) {
        let zone: Zone = zone.parse().unwrap();
        let Ok(seq) = Sequence::new("n", &format, reset, zone, 1, 10) else {
            return Ok(());
        };
        let mut seen: HashMap<String, (String, u64)> = HashMap::new();
        for (hours, counter) in draws {
            if counter >= seq.end() {
                continue;
            }
            let at = base + hours * 3_600_000;
            let stamp = seq.stamp(at).unwrap();
            let number = stamp.number(counter);
            let this = (stamp.period().to_owned(), counter);
            if let Some(other) = seen.get(&number) {
                prop_assert_eq!(other, &this, "{} renders {:?} for two claims", format, number);
            }
            if let Some(n) = seq.format().width() {
                let digits = format!("{counter:0n$}", n = n as usize);
                prop_assert!(number.contains(&digits));
            }
            seen.insert(number, this);
        }
    }

    #[test]
    fn the_period_is_the_local_date(at in FROM_MS..TO_MS, zone in 0..ZONES.len()) {
        let seq = &by_zone()[zone];
        let stamp = seq.stamp(at).unwrap();
        let number = stamp.number(5);
        let date = number.split('|').next().unwrap().replace('-', "");
        prop_assert_eq!(stamp.period(), date.as_str());
        prop_assert_eq!(stamp.tag(), format!("n@{date}"));
    }
}

/// One day-reset sequence per zone, built once (validation renders every sample day).
fn by_zone() -> &'static [Sequence] {
    static SEQS: std::sync::OnceLock<Vec<Sequence>> = std::sync::OnceLock::new();
    SEQS.get_or_init(|| {
        ZONES
            .iter()
            .map(|z| {
                let zone: Zone = z.parse().unwrap();
                Sequence::new("n", "{date:%Y-%m-%d}|{seq}", Reset::Day, zone, 1, 1).unwrap()
            })
            .collect()
    })
}

#[test]
fn the_validator_refuses_what_collides() {
    // Each of these has two claims that render alike; the property test above would find them
    // if the validator let them through.
    for (format, reset) in [
        ("{date:%-d}{seq}", Reset::Never),
        ("{date:%m%d}{seq:03}", Reset::Day),
        ("{date:%Y%m}{seq:03}", Reset::Day),
        ("{date:%H}{seq:03}", Reset::Day),
    ] {
        assert!(
            Sequence::new("n", format, reset, Zone::default(), 1, 1).is_err(),
            "{format} / {reset}"
        );
    }
}
