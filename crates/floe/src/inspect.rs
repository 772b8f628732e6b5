//! `floe decode` and `floe layout`: read-only views of IDs and layouts.

use std::fmt::Write as _;

use floe_core::{rfc3339, Clock, FieldKind, IdForm, Layout, SystemClock};

use crate::cli::{self, Failure};

/// Options of `floe decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The ID in any form: decimal, hex (0x… or 16 digits), radix62 (11 characters), radix36
    /// (13 characters) or friendly (yyyyMMddHHmmssSSS-…).
    #[arg(allow_hyphen_values = true)]
    id: String,
    /// Read the ID in this form instead of detecting it (number, string, hex, radix62,
    /// radix36, friendly): a 13-digit radix36 string, say, reads as a number otherwise.
    #[arg(long, value_name = "FORM")]
    form: Option<String>,
    /// Layout preset or spec string (see `floe layout --help`).
    #[arg(long, short, default_value = "genid", env = "FLOE_LAYOUT")]
    layout: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `floe layout`.
#[derive(Debug, clap::Args)]
pub struct LayoutArgs {
    /// Layout preset (genid, twitter, masa, sonyflake, baidu, goldflake, js53; options as
    /// `masa(seq_bits=12,worker_bits=10,timestamp=ms,epoch=2020-01-01)`) or a spec string
    /// such as `time:41/1ms@2020-01-01 worker:10 seq:12`.
    #[arg(long, short, default_value = "genid", env = "FLOE_LAYOUT")]
    layout: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Reads an ID in the form given, or in whichever form it is written.
fn parse_id(text: &str, form: Option<&str>, layout: &Layout) -> Result<(u64, IdForm), Failure> {
    let usage = |e: floe_core::IdFormError| Failure::usage(format!("id: {e}"));
    match form {
        Some(name) => {
            let form: IdForm = name
                .parse()
                .map_err(|e| Failure::usage(format!("--form: {e}")))?;
            Ok((form.parse(text.trim(), Some(layout)).map_err(usage)?, form))
        }
        None => IdForm::detect(text, Some(layout)).map_err(usage),
    }
}

/// `floe decode`.
pub fn decode(args: DecodeArgs) -> Result<(), Failure> {
    let layout = cli::layout(&args.layout)?;
    let (id, form) = parse_id(&args.id, args.form.as_deref(), &layout)?;
    let d = layout
        .decode(id)
        .map_err(|e| Failure::usage(format!("id {id}: {e}")))?;
    let forms: Vec<(&str, String)> = IdForm::ALL
        .into_iter()
        .filter(|f| *f != IdForm::Number)
        .filter_map(|f| Some((f.name(), f.render(id, Some(&layout))?)))
        .collect();
    if args.json {
        let mut v = serde_json::to_value(&d).expect("decoded IDs serialise");
        v["form"] = form.name().into();
        v["forms"] = forms
            .iter()
            .map(|(name, text)| (name.to_string(), serde_json::Value::from(text.as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        println!("{v}");
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(out, "id       {id} ({:#018x}), read as {form}", id);
    let _ = writeln!(out, "layout   {layout}");
    let _ = writeln!(out, "time     {} (unix ms {})", d.time_rfc3339(), d.unix_ms);
    for (name, value) in &d.fields {
        let _ = writeln!(out, "{name:<8} {value}");
    }
    for (name, text) in &forms {
        let _ = writeln!(out, "{name:<8} {text}");
    }
    print!("{out}");
    Ok(())
}

/// `floe layout`.
pub fn layout(args: LayoutArgs) -> Result<(), Failure> {
    let layout = cli::layout(&args.layout)?;
    let cap = layout.capacity();
    let now = SystemClock.now_ms();
    let status = match layout.check_at(now) {
        Ok(()) if cap.end_ms.saturating_sub(now) < 365 * 86_400_000 => {
            "WARNING: less than a year left".to_string()
        }
        Ok(()) => "ok".to_string(),
        Err(e) => format!("UNUSABLE: {e}"),
    };
    if args.json {
        let v = serde_json::json!({
            "layout": layout.to_string(),
            "capacity": cap,
            "epoch": rfc3339(layout.time_spec().epoch_ms),
            "end": rfc3339(cap.end_ms),
            "status": status,
        });
        println!("{v}");
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(out, "layout      {layout}");
    let _ = writeln!(out, "bits        field");
    for f in layout.fields() {
        let role = match f.kind {
            FieldKind::Sign => "always 0",
            FieldKind::Time => "ticks since the epoch",
            FieldKind::Node => "node identity",
            FieldKind::Lane => "lane (one per connection)",
            FieldKind::Seq => "sequence within a tick",
        };
        let _ = writeln!(
            out,
            "{:>2}..{:<2}      {} ({} bits, {role})",
            f.shift + f.width - 1,
            f.shift,
            f.name,
            f.width
        );
    }
    let years = (cap.end_ms as f64 - now as f64) / (365.25 * 86_400_000.0);
    let left = if years >= 0.0 {
        format!("{years:.1} years from now")
    } else {
        format!("{:.1} years ago", -years)
    };
    let _ = writeln!(out, "tick        {} ms", cap.tick_ms);
    let _ = writeln!(
        out,
        "per tick    {} IDs per lane, {} lane(s)",
        cap.ids_per_tick_per_lane, cap.lanes
    );
    let _ = writeln!(out, "per node    {:.0} IDs/s", cap.ids_per_second_per_node);
    let _ = writeln!(out, "nodes       {}", cap.nodes);
    let _ = writeln!(out, "epoch       {}", rfc3339(layout.time_spec().epoch_ms));
    let _ = writeln!(out, "runs out    {} ({left})", rfc3339(cap.end_ms));
    let _ = writeln!(out, "status      {status}");
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_id;
    use floe_core::{IdForm, Layout};

    #[test]
    fn ids_parse_in_every_form_or_the_one_named() {
        let layout = Layout::parse("genid").unwrap();
        let read = |t: &str, f: Option<&str>| parse_id(t, f, &layout);
        assert_eq!(read("42", None).unwrap(), (42, IdForm::Number));
        assert_eq!(read("0xff", None).unwrap(), (255, IdForm::Hex));
        assert_eq!(read("00000000000000ff", None).unwrap(), (255, IdForm::Hex));
        assert_eq!(
            read("0000000004F", None).unwrap(),
            (4 * 62 + 15, IdForm::Radix62)
        );
        assert_eq!(
            read("18446744073709551615", None).unwrap(),
            (u64::MAX, IdForm::Number)
        );
        assert_eq!(
            read("0000000000010", Some("radix36")).unwrap(),
            (36, IdForm::Radix36)
        );
        for bad in ["", "-1", "12a", "0xzz", "18446744073709551616"] {
            assert_eq!(read(bad, None).unwrap_err().code, 64, "{bad}");
        }
        assert_eq!(read("42", Some("base64")).unwrap_err().code, 64);
    }
}
