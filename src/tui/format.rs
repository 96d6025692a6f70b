//! Plain text formatting shared by the model, `update` and the views: durations, counts,
//! rates, windows and clipped strings. A leaf: it knows nothing of the console's model.

pub fn fmt_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

pub fn fmt_count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

pub fn fmt_rate(r: f64) -> String {
    if r <= 0.0 {
        "—".into()
    } else if r >= 10_000.0 {
        format!("{:.0}k", r / 1e3)
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A window as dates when both ends are midnights, else as instants.
pub fn fmt_window(w: &crate::domain::Window) -> String {
    let midnight = |t: chrono::DateTime<chrono::Utc>| t.time() == chrono::NaiveTime::MIN;
    if midnight(w.start) && midnight(w.end) {
        format!(
            "[{}, {})",
            w.start.format("%Y-%m-%d"),
            w.end.format("%Y-%m-%d")
        )
    } else {
        w.to_string()
    }
}

/// Cuts `s` to `n` characters, marking the cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
