//! Layout behaviour seen from outside: presets decode the original systems' IDs; spec strings and
//! compose/decode round-trip for every preset and random valid layouts.

use floe_core::layout::rfc3339;
use floe_core::{FieldKind, Layout, PRESETS};
use proptest::prelude::*;

#[test]
fn decodes_a_twitter_id() {
    // Known example: 1212161516238172202 >> 22 = 289001626343 ms after 1288834974657.
    let d = Layout::parse("twitter")
        .unwrap()
        .decode(1212161516238172202)
        .unwrap();
    assert_eq!(d.time_rfc3339(), "2020-01-01T00:00:01Z");
    assert_eq!(d.get("dc"), Some(3));
    assert_eq!(d.get("worker"), Some(7));
    assert_eq!(d.get("seq"), Some(42));
}

#[test]
fn decodes_a_genid_id() {
    // Seed 000: high 32 bits = seconds (time = id >> 32), then zone 5, dc 3, machine 3, bucket 5,
    // counter 16. 1700000000·2^32 + 3·2^27 + 5·2^24 + 6·2^21 + 17·2^16 + 1234:
    let id = 7301444403700237522u64;
    assert_eq!(id >> 32, 1_700_000_000);
    let d = Layout::parse("genid").unwrap().decode(id).unwrap();
    assert_eq!(d.time_rfc3339(), "2023-11-14T22:13:20Z");
    assert_eq!(
        d.fields,
        [
            ("time", 1_700_000_000),
            ("zone", 3),
            ("dc", 5),
            ("machine", 6),
            ("lane", 17),
            ("seq", 1234)
        ]
        .map(|(n, v)| (n.to_string(), v))
    );
}

#[test]
fn decodes_a_sonyflake_id() {
    // Sonyflake: 39 bits of 10 ms since 2014-09-01, 8 bits sequence, 16 bits machine.
    // 2024-01-01 is 29453760000 units after the epoch: 29453760000<<24 | 5<<16 | 0xBEEF.
    let d = Layout::parse("sonyflake")
        .unwrap()
        .decode(494152093532536559)
        .unwrap();
    assert_eq!(d.time_rfc3339(), "2024-01-01T00:00:00Z");
    assert_eq!(d.tick, 29_453_760_000);
    assert_eq!(d.get("seq"), Some(5));
    assert_eq!(d.get("machine"), Some(0xBEEF));
}

#[test]
fn decodes_a_masa_id() {
    // MASA: (timestamp - BaseTime) << (WorkerIdBits + SequenceBits) | workerId << SequenceBits | seq,
    // defaults 10 and 12 bits, ms. 2023-06-15T12:00:00.123Z - 2020-01-01 = 109_993_600_123 ms.
    let d = Layout::parse("masa")
        .unwrap()
        .decode(457152292972400717)
        .unwrap();
    assert_eq!(d.unix_ms, 1_686_830_400_123);
    assert_eq!(d.time_rfc3339(), "2023-06-15T12:00:00.123Z");
    assert_eq!(d.get("worker"), Some(513));
    assert_eq!(d.get("seq"), Some(77));
}

#[test]
fn decode_refuses_foreign_bits() {
    let js = Layout::parse("js53").unwrap();
    assert!(js
        .decode(1 << 53)
        .unwrap_err()
        .to_string()
        .contains("53 bits"));
    let tw = Layout::parse("twitter").unwrap();
    assert!(tw
        .decode(1 << 63)
        .unwrap_err()
        .to_string()
        .contains("sign bit"));
}

#[test]
fn every_preset_is_usable_today_except_baidu() {
    let now = 1_795_000_000_000; // 2026-11-18
    for name in PRESETS {
        let l = Layout::parse(name).unwrap();
        let r = l.check_at(now);
        assert_eq!(r.is_err(), *name == "baidu", "{name}: {r:?}");
        assert_eq!(Layout::parse(&l.to_string()).unwrap(), l, "{name}");
    }
    assert!(Layout::parse("js53").unwrap().total_bits() <= 53);
    assert_eq!(
        rfc3339(Layout::parse("js53").unwrap().end_ms()),
        "2089-09-06T15:47:35.552Z"
    );
}

/// A random valid layout: optional sign, time, some node fields, optional lane, seq.
fn arb_layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        20u32..=45,
        prop::collection::vec(1u32..=6, 0..4),
        prop::option::of(1u32..=5),
        1u32..=16,
        prop::sample::select(vec![1u64, 10, 1000, 60_000]),
        0u64..1_700_000_000_000,
        any::<bool>(),
    )
        .prop_filter_map(
            "fits 64 bits",
            |(sign, time, nodes, lane, seq, unit, epoch, seq_last)| {
                let mut fields = Vec::new();
                if sign {
                    fields.push(("sign".to_string(), FieldKind::Sign, 1));
                }
                fields.push(("time".to_string(), FieldKind::Time, time));
                let node_fields: Vec<_> = nodes
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (format!("n{i}"), FieldKind::Node, *w))
                    .collect();
                // Node fields either above the lane and sequence (Twitter) or below them (Sonyflake).
                if !seq_last {
                    fields.extend(node_fields.clone());
                }
                if let Some(l) = lane {
                    fields.push(("lane".to_string(), FieldKind::Lane, l));
                }
                fields.push(("seq".to_string(), FieldKind::Seq, seq));
                if seq_last {
                    fields.extend(node_fields);
                }
                floe_core::Layout::new(
                    fields,
                    floe_core::TimeSpec {
                        unit_ms: unit,
                        epoch_ms: epoch,
                    },
                )
                .ok()
            },
        )
}

fn arb_any_layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        prop::sample::select(PRESETS.to_vec()).prop_map(|p| Layout::parse(p).unwrap()),
        arb_layout(),
    ]
}

proptest! {
    #[test]
    fn spec_string_round_trips(layout in arb_any_layout()) {
        let printed = layout.to_string();
        let parsed = Layout::parse(&printed).unwrap();
        prop_assert_eq!(&parsed, &layout);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn compose_decode_round_trips(layout in arb_any_layout(), raw in prop::collection::vec(any::<u64>(), 8)) {
        let node_values: Vec<(String, u64)> = layout
            .node_fields()
            .zip(&raw)
            .map(|(f, r)| (f.name.clone(), r & f.max()))
            .collect();
        let identity = layout.identity(&node_values).unwrap();
        let tick = raw[4] & layout.time_field().max();
        let lane = layout.field(FieldKind::Lane).map_or(0, |f| raw[5] & f.max());
        let seq = raw[6] & layout.seq_field().max();
        let id = layout.compose(tick, &identity, lane, seq);
        let d = layout.decode(id).unwrap();
        prop_assert_eq!(d.tick, tick);
        prop_assert_eq!(d.get("seq"), Some(seq));
        if layout.field(FieldKind::Lane).is_some() {
            prop_assert_eq!(d.get("lane"), Some(lane));
        }
        for (name, value) in &node_values {
            prop_assert_eq!(d.get(name), Some(*value));
        }
        prop_assert_eq!(d.unix_ms, layout.tick_start_ms(tick));
    }

    #[test]
    fn garbage_specs_never_panic(s in "[a-z0-9:/@ .()=,_-]{0,40}") {
        let _ = Layout::parse(&s);
    }
}
