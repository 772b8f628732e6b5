//! Every string form of an ID round-trips, and the fixed-width forms sort like the numbers.

use floe_core::{IdForm, Layout};
use proptest::prelude::*;

/// The fixed-width forms, whose byte order must be the numeric order.
const ORDERED: [IdForm; 3] = [IdForm::Hex, IdForm::Radix62, IdForm::Radix36];

/// The case CI drew: a hex rendering made only of decimal digits is read back as a number by
/// `detect`, and as the ID when the form is given.
#[test]
fn digit_only_hex_is_a_number_unless_the_form_is_given() {
    let id = 2_769_724_220_899_590_176;
    let text = IdForm::Hex.render(id, None).unwrap();
    assert_eq!(text, "2670098118840020");
    assert_eq!(
        IdForm::detect(&text, None),
        Ok((2_670_098_118_840_020, IdForm::Number))
    );
    assert_eq!(IdForm::Hex.parse(&text, None), Ok(id));
    assert_eq!(
        IdForm::detect("0x2670098118840020", None),
        Ok((id, IdForm::Hex))
    );
}

proptest! {
    #[test]
    fn every_form_round_trips_and_detect_reads_it_back(id in any::<u64>()) {
        // genid uses all 64 bits, so every u64 is one of its IDs.
        let layout = Layout::parse("genid").unwrap();
        for form in IdForm::ALL {
            let text = form.render(id, Some(&layout)).unwrap();
            prop_assert_eq!(form.parse(&text, Some(&layout)), Ok(id), "{} {}", form, text);
            let (read, detected) = IdForm::detect(&text, Some(&layout)).unwrap();
            if text.bytes().all(|b| b.is_ascii_digit()) {
                // Digits only reads as a decimal number, whatever form wrote it (documented on
                // `detect`): hex 2670098118840020 is the number 2670098118840020.
                prop_assert_eq!(detected, IdForm::Number, "{} {}", form, text);
                prop_assert_eq!(read, text.parse::<u64>().unwrap(), "{} {}", form, text);
            } else {
                prop_assert_eq!(read, id, "{} {}", form, text);
            }
        }
        let friendly = IdForm::Friendly.render(id, Some(&layout)).unwrap();
        let decoded = layout.decode(id).unwrap();
        let (read, form) = IdForm::detect(&friendly, Some(&layout)).unwrap();
        prop_assert_eq!(form, IdForm::Friendly);
        prop_assert_eq!(layout.decode(read).unwrap(), decoded);
    }

    #[test]
    fn fixed_width_forms_sort_like_the_numbers(a in any::<u64>(), b in any::<u64>()) {
        for form in ORDERED {
            let (sa, sb) = (form.render(a, None).unwrap(), form.render(b, None).unwrap());
            prop_assert_eq!(sa.len(), sb.len());
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b), "{}: {} vs {}", form, sa, sb);
        }
    }

    #[test]
    fn friendly_sorts_like_the_numbers_within_one_node(t1 in 0u64..1 << 31, t2 in 0u64..1 << 31, s1 in 0u64..1 << 16, s2 in 0u64..1 << 16) {
        // Same node and lane: the friendly text of the later ID sorts later as long as the
        // sequences have the same number of digits (the time prefix is fixed-width).
        let layout = Layout::parse("genid").unwrap();
        let identity = layout.identity(&[("machine".into(), 3)]).unwrap();
        let a = layout.compose(t1, &identity, 1, s1);
        let b = layout.compose(t2, &identity, 1, s2);
        let fa = IdForm::Friendly.render(a, Some(&layout)).unwrap();
        let fb = IdForm::Friendly.render(b, Some(&layout)).unwrap();
        if t1 != t2 {
            prop_assert_eq!(fa[..17].cmp(&fb[..17]), a.cmp(&b));
        }
    }
}
