//! Minimal JSON writers into a byte buffer: integers, fixed-point hours, timestamps and
//! correctly escaped strings, without building any value tree.

/// Appends raw, already valid JSON text.
#[inline]
pub(crate) fn raw(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

#[inline]
pub(crate) fn int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[pos..]);
}

/// A number of quarter hours as a JSON float with two decimals, e.g. `9` → `2.25`.
pub(crate) fn quarters(out: &mut Vec<u8>, q: u64) {
    int(out, (q / 4) as i64);
    out.extend_from_slice(match q % 4 {
        0 => b".0",
        1 => b".25",
        2 => b".5",
        _ => b".75",
    });
}

fn escape_byte(b: u8) -> Option<&'static [u8]> {
    const CONTROL: [&[u8]; 32] = [
        b"\\u0000", b"\\u0001", b"\\u0002", b"\\u0003", b"\\u0004", b"\\u0005", b"\\u0006",
        b"\\u0007", b"\\b", b"\\t", b"\\n", b"\\u000b", b"\\f", b"\\r", b"\\u000e", b"\\u000f",
        b"\\u0010", b"\\u0011", b"\\u0012", b"\\u0013", b"\\u0014", b"\\u0015", b"\\u0016",
        b"\\u0017", b"\\u0018", b"\\u0019", b"\\u001a", b"\\u001b", b"\\u001c", b"\\u001d",
        b"\\u001e", b"\\u001f",
    ];
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        0..=0x1f => Some(CONTROL[b as usize]),
        _ => None,
    }
}

/// Appends the escaped body of a JSON string (no surrounding quotes).
pub(crate) fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(esc) = escape_byte(b) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(esc);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A quoted JSON string.
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// A quoted JSON string made of several pieces.
#[inline]
pub(crate) fn string_parts(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for p in parts {
        escaped(out, p);
    }
    out.push(b'"');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn two(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// A quoted `YYYY-MM-DDTHH:MM:SSZ` timestamp for epoch seconds (years 0..=9999).
pub(crate) fn timestamp(out: &mut Vec<u8>, secs: i64) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u32;
    let y = y.clamp(0, 9999) as u32;
    out.push(b'"');
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, sod / 3600);
    out.push(b':');
    two(out, sod / 60 % 60);
    out.push(b':');
    two(out, sod % 60);
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn writers_produce_valid_json() {
        assert_eq!(s(|o| int(o, 0)), "0");
        assert_eq!(s(|o| int(o, -1234567)), "-1234567");
        assert_eq!(s(|o| int(o, i64::MIN)), i64::MIN.to_string());
        assert_eq!(s(|o| quarters(o, 9)), "2.25");
        assert_eq!(s(|o| quarters(o, 8)), "2.0");
        let text = "a\"b\\c\nd\te\u{1}f Café";
        let out = s(|o| string(o, text));
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
        for secs in [
            0i64,
            951_782_400,
            1_700_000_000,
            1_709_164_799,
            4_102_444_800,
        ] {
            let out = s(|o| timestamp(o, secs));
            let expected = chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .format("\"%Y-%m-%dT%H:%M:%SZ\"")
                .to_string();
            assert_eq!(out, expected);
        }
    }
}
