//! Compact JSON text written straight into the pending value of an Arrow string builder,
//! without going through `fmt` machinery (serde_json's `Display` costs several times more).

use std::fmt::Write as _;

use super::lite::Json;
use arrow_array::builder::StringBuilder;

/// For each byte: 0 when it is written as is, else the letter after the backslash
/// (`u` for `\u00XX`), as serde_json does.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes `s` as the inside of a JSON string (no quotes), escaping like serde_json.
pub(crate) fn write_escaped(out: &mut StringBuilder, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            continue;
        }
        if start < i {
            let _ = out.write_str(&s[start..i]);
        }
        let code = [
            b'\\',
            esc,
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ];
        let len = if esc == b'u' { 6 } else { 2 };
        let _ = out.write_str(std::str::from_utf8(&code[..len]).unwrap_or_default());
        start = i + 1;
    }
    if start < bytes.len() {
        let _ = out.write_str(&s[start..]);
    }
}

/// Writes `v` as compact JSON text.
pub(crate) fn write_json(out: &mut StringBuilder, v: &Json<'_>) {
    match v {
        Json::Null => {
            let _ = out.write_str("null");
        }
        Json::Bool(true) => {
            let _ = out.write_str("true");
        }
        Json::Bool(false) => {
            let _ = out.write_str("false");
        }
        Json::I64(n) => {
            let _ = write!(out, "{n}");
        }
        Json::U64(n) => {
            let _ = write!(out, "{n}");
        }
        Json::F64(n) => {
            // serde_json's own number text (shortest round trip, exponent form).
            let _ = write!(
                out,
                "{}",
                serde_json::Number::from_f64(*n)
                    .map_or_else(|| "null".to_owned(), |n| n.to_string())
            );
        }
        Json::Str(s) => {
            let _ = out.write_str("\"");
            write_escaped(out, s);
            let _ = out.write_str("\"");
        }
        Json::Arr(items) => {
            let _ = out.write_str("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_str(",");
                }
                write_json(out, item);
            }
            let _ = out.write_str("]");
        }
        Json::Obj(map) => {
            let _ = out.write_str("{");
            for (i, (k, item)) in map.iter().enumerate() {
                let _ = out.write_str(if i > 0 { ",\"" } else { "\"" });
                write_escaped(out, k);
                let _ = out.write_str("\":");
                write_json(out, item);
            }
            let _ = out.write_str("}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use serde_json::json;

    #[test]
    fn output_matches_serde_json() {
        let v = json!({"a\"b": [1, -2, 2.5, 1e300, true, null, "x\n\t\\/\u{1}\u{8}\u{c}é"], "": {}, "z": []});
        let mut b = StringBuilder::new();
        write_json(&mut b, &crate::sink::lite::lite(v.clone()));
        b.append_value("");
        let arr = b.finish();
        assert_eq!(arr.value(0), serde_json::to_string(&v).unwrap());
        assert_eq!(arr.len(), 1);
    }
}
