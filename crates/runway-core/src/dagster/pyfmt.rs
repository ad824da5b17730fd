//! Python's formatting where Dagster's output depends on it: `repr(float)`,
//! `str()` of config scalars, `int()` parsing, and `json.dumps(..., sort_keys=True)`
//! with its default separators and `ensure_ascii`, which is what
//! `serialize_value` produces.

use std::fmt::Write as _;

use serde_json::{Number, Value};

/// `repr(f)` / `str(f)` for a Python float.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Python's repr.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let decpt = exp + 1;
    let n = digits.len() as i32;
    if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let e = decpt - 1;
        let esign = if e < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", e.abs())
    } else if decpt <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{sign}{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// `str(n)` for a JSON number: integers as written, floats as Python prints them.
pub fn number_str(n: &Number) -> String {
    if n.is_f64() {
        n.as_f64().map(float_repr).unwrap_or_default()
    } else {
        n.to_string()
    }
}

/// Python's `int(s)` for base-10 strings: surrounding whitespace, a sign, and
/// single underscores between digits are allowed.
pub fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, non-ASCII
/// escaped as `\uXXXX`, floats as `repr`.
pub fn dumps_sorted(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(0.0);
                // json.dumps spells non-finite floats this way (allow_nan=True).
                match float_repr(f).as_str() {
                    "nan" => out.push_str("NaN"),
                    "inf" => out.push_str("Infinity"),
                    "-inf" => out.push_str("-Infinity"),
                    s => out.push_str(s),
                }
            } else {
                let _ = write!(out, "{n}");
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>) {
    // serde_json's map is ordered by key bytes, which for UTF-8 is code
    // point order: the order Python's sort_keys gives.
    write_entries(out, map.iter().map(|(k, v)| (k.as_str(), v)), None);
}

/// [`dumps_sorted`] of an object given as its entries in key order (borrowed
/// from different places, so there is no map to hand over), with the length
/// of its text up to the end of the entry named `mark` (0 without one).
pub fn dumps_sorted_entries<'v>(
    entries: impl Iterator<Item = (&'v str, &'v Value)>,
    mark: &str,
) -> (String, usize) {
    let mut out = String::with_capacity(4096);
    let marked = write_entries(&mut out, entries, Some(mark));
    (out, marked)
}

/// Writes the object and returns where the entry `mark` ends in `out`.
fn write_entries<'v>(
    out: &mut String,
    entries: impl Iterator<Item = (&'v str, &'v Value)>,
    mark: Option<&str>,
) -> usize {
    let mut marked = 0;
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, k);
        out.push_str(": ");
        write_value(out, v);
        if mark == Some(k) {
            marked = out.len();
        }
    }
    out.push('}');
    marked
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Runs of printable ASCII (most of any string) are copied whole.
    let mut rest = s;
    while !rest.is_empty() {
        let run = plain_prefix(rest.as_bytes());
        out.push_str(&rest[..run]);
        rest = &rest[run..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        escape_char(out, c);
        rest = &rest[c.len_utf8()..];
    }
    out.push('"');
}

/// A byte `json.dumps` copies as is: printable ASCII but `"` and `\\`.
fn plain(b: u8) -> bool {
    (0x20..=0x7f).contains(&b) && b != b'"' && b != b'\\'
}

/// How many leading bytes are [`plain`]. Step arguments are mostly long plain
/// strings (paths, YAML, base64), so eight bytes are tested per step: a word
/// has a byte to escape if one is below 0x20, has its high bit, or equals `"`
/// or `\\`. The zero-byte test can flag a byte above a true hit (a borrow
/// carries up), never one below it, so the lowest flag is exact.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w;
    let mut words = bytes.chunks_exact(8);
    let mut done = 0;
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let flags = (below_space
            | zero_byte(w ^ (ONES * u64::from(b'"')))
            | zero_byte(w ^ (ONES * u64::from(b'\\')))
            | w)
            & HIGH;
        if flags != 0 {
            return done + flags.trailing_zeros() as usize / 8;
        }
        done += 8;
    }
    done + words
        .remainder()
        .iter()
        .position(|&b| !plain(b))
        .unwrap_or(words.remainder().len())
}

fn escape_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{08}' => out.push_str("\\b"),
        '\u{0c}' => out.push_str("\\f"),
        c => {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (1e3, "1000.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123456789.125, "123456789.125"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (1.5e300, "1.5e+300"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "repr({f})");
        }
    }

    #[test]
    fn parse_int_follows_python() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("-1_000"), Some(-1000));
        assert_eq!(parse_int("+7"), Some(7));
        for bad in ["", "1.5", "_1", "1__0", "abc", "-", "1_"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dumps_matches_python_json() {
        let v: Value = serde_json::from_str(
            r#"{"b": [1, 2.0, null, true], "a": "é\u0001\"\\\n", "c": {"z": {}, "y": []}, "d": "😀"}"#,
        )
        .unwrap();
        assert_eq!(
            dumps_sorted(&v),
            r#"{"a": "\u00e9\u0001\"\\\n", "b": [1, 2.0, null, true], "c": {"y": [], "z": {}}, "d": "\ud83d\ude00"}"#
        );
    }

    /// Every byte value at every offset of a word, against the bytewise rule.
    #[test]
    fn plain_prefix_stops_at_the_first_byte_to_escape() {
        for bad in 0..=255u8 {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 24];
                // A byte to escape above the tested one must not hide it.
                bytes[23] = b'"';
                bytes[at] = bad;
                let want = bytes.iter().position(|&b| !plain(b)).unwrap_or(24);
                assert_eq!(plain_prefix(&bytes), want, "byte {bad:#x} at {at}");
            }
        }
        assert_eq!(plain_prefix(b""), 0);
        assert_eq!(plain_prefix(b"\x7f~ plain"), 8);
        let mut s = String::new();
        write_str(&mut s, "0123456789abcdef\u{7f}\"é\n/0123456789abcdef");
        assert_eq!(
            s,
            "\"0123456789abcdef\u{7f}\\\"\\u00e9\\n/0123456789abcdef\""
        );
    }
}
