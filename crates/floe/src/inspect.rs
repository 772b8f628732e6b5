//! `floe decode` and `floe layout`: read-only views of IDs and layouts.

use std::fmt::Write as _;

use floe_core::{rfc3339, Clock, FieldKind, SystemClock};

use crate::cli::{self, Failure};

/// Options of `floe decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The ID, decimal or 0x-prefixed hex.
    #[arg(allow_hyphen_values = true)]
    id: String,
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

/// Parses an ID in decimal or `0x` hex.
fn parse_id(text: &str) -> Result<u64, Failure> {
    floe_core::parse_id(text).ok_or_else(|| {
        Failure::usage(format!(
            "id `{text}` is not an unsigned 64-bit integer (decimal, or hex with 0x; max {})",
            u64::MAX
        ))
    })
}

/// `floe decode`.
pub fn decode(args: DecodeArgs) -> Result<(), Failure> {
    let layout = cli::layout(&args.layout)?;
    let id = parse_id(&args.id)?;
    let d = layout
        .decode(id)
        .map_err(|e| Failure::usage(format!("id {id}: {e}")))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&d).expect("decoded IDs serialise")
        );
        return Ok(());
    }
    let mut out = String::new();
    let _ = writeln!(out, "id       {id} ({:#018x})", id);
    let _ = writeln!(out, "layout   {layout}");
    let _ = writeln!(out, "time     {} (unix ms {})", d.time_rfc3339(), d.unix_ms);
    for (name, value) in &d.fields {
        let _ = writeln!(out, "{name:<8} {value}");
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

    #[test]
    fn ids_parse_in_decimal_and_hex() {
        assert_eq!(parse_id("42").unwrap(), 42);
        assert_eq!(parse_id("0xff").unwrap(), 255);
        assert_eq!(parse_id("18446744073709551615").unwrap(), u64::MAX);
        for bad in ["", "-1", "12a", "0xzz", "18446744073709551616"] {
            assert_eq!(parse_id(bad).unwrap_err().code, 64, "{bad}");
        }
    }
}
