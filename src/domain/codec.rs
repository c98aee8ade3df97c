//! The JSON codec of the event `state` bytes, as Python writes them.
//!
//! Python's eventsourcing stores `json.JSONEncoder(separators=(",", ":"),
//! ensure_ascii=False)` output with typed values wrapped as
//! `{"_type_": name, "_data_": text}`. No JSON crate writes Python's float
//! `repr`, reads `NaN`/`Infinity`, keeps integers of any size and key order at
//! once, so this small codec is written here. It never panics on input: bad
//! bytes give [`Error::Decode`].

use crate::domain::value::Value;
use crate::error::{Error, Result};
use std::fmt::Write as _;
use uuid::Uuid;

/// Tag names of the typed values that eventsourcing registers.
pub const UUID_TAG: &str = "uuid_hex";
pub const DATETIME_TAG: &str = "datetime_iso";
pub const DECIMAL_TAG: &str = "decimal_str";

const MAX_DEPTH: usize = 512;

// ---------------------------------------------------------------- encoding

/// Appends the JSON text of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt(digits) => out.push_str(digits),
        Value::Float(f) => write_float(*f, out),
        Value::Str(s) => write_str(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_into(item, out);
            }
            out.push(']');
        }
        Value::Dict(items) => encode_dict(items.iter().map(|(k, v)| (k.as_str(), v)), out),
        Value::Uuid(u) => write_tagged(UUID_TAG, &u.simple().to_string(), out),
        Value::DateTime(text) => write_tagged(DATETIME_TAG, text, out),
        Value::Decimal(text) => write_tagged(DECIMAL_TAG, text, out),
    }
}

/// Appends a JSON object built from `items` in their order.
pub fn encode_dict<'a>(items: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(k, out);
        out.push(':');
        encode_into(v, out);
    }
    out.push('}');
}

/// The JSON text of `value`.
pub fn encode(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    encode_into(value, &mut out);
    out
}

fn write_tagged(tag: &str, data: &str, out: &mut String) {
    out.push_str("{\"_type_\":");
    write_str(tag, out);
    out.push_str(",\"_data_\":");
    write_str(data, out);
    out.push('}');
}

/// A string as Python's `json` writes it with `ensure_ascii=False`.
pub fn write_str(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A float as Python's `repr()` writes it (what `json.dumps` uses).
pub fn write_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.25e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

// ---------------------------------------------------------------- decoding

/// Parses JSON text as Python's `json.loads` with eventsourcing's object hook.
pub fn decode(bytes: &[u8]) -> Result<Value> {
    let mut p = Parser { b: bytes, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.err("extra data after the JSON value"));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> Error {
        Error::decode(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.b.get(self.i) {
            None => Err(self.err("unexpected end of data")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Value::Null),
            Some(b'N') if self.eat("NaN") => Ok(Value::Float(f64::NAN)),
            Some(b'I') if self.eat("Infinity") => Ok(Value::Float(f64::INFINITY)),
            Some(b'-') if self.eat("-Infinity") => Ok(Value::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::List(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value> {
        self.i += 1;
        let mut items: Vec<(String, Value)> = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::Dict(items));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            // Python keeps the first position of a repeated key, the last value.
            match items.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = v,
                None => items.push((key, v)),
            }
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return untag(items);
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.b.get(self.i) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("invalid number")),
        }
        let _ = int_start;
        let mut is_float = false;
        if self.b.get(self.i) == Some(&b'.') && matches!(self.b.get(self.i + 1), Some(b'0'..=b'9'))
        {
            is_float = true;
            self.i += 1;
            while let Some(b'0'..=b'9') = self.b.get(self.i) {
                self.i += 1;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            let mut j = self.i + 1;
            if let Some(b'+' | b'-') = self.b.get(j) {
                j += 1;
            }
            if matches!(self.b.get(j), Some(b'0'..=b'9')) {
                is_float = true;
                self.i = j;
                while let Some(b'0'..=b'9') = self.b.get(self.i) {
                    self.i += 1;
                }
            }
        }
        // The slice is ASCII digits and signs only.
        let text =
            std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.err("invalid number"))?;
        if is_float {
            text.parse::<f64>()
                .map(Value::Float)
                .map_err(|_| self.err("invalid number"))
        } else {
            Ok(match text.parse::<i64>() {
                Ok(i) => Value::Int(i),
                Err(_) => Value::BigInt(normalise_big(text)),
            })
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| self.err("invalid \\u escape"))?;
        let n = u32::from_str_radix(s, 16).map_err(|_| self.err("invalid \\u escape"))?;
        self.i += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let run_start = self.i;
            while let Some(&b) = self.b.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let run = std::str::from_utf8(&self.b[run_start..self.i])
                .map_err(|_| Error::decode(format!("invalid UTF-8 at byte {run_start}")))?;
            out.push_str(run);
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = *self
                        .b
                        .get(self.i)
                        .ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.eat("\\u") {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(
                                char::from_u32(code)
                                    .ok_or_else(|| self.err("lone surrogate in \\u escape"))?,
                            );
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }
}

/// `-0` and similar stay as Python's `int()` would print them.
fn normalise_big(text: &str) -> String {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        "0".into()
    } else if neg {
        format!("-{digits}")
    } else {
        digits.into()
    }
}

/// eventsourcing's object hook: a dict of exactly `_type_` and `_data_` is a
/// typed value.
fn untag(items: Vec<(String, Value)>) -> Result<Value> {
    if items.len() == 2 {
        let tag = items.iter().find(|(k, _)| k == "_type_").map(|(_, v)| v);
        let data = items.iter().find(|(k, _)| k == "_data_").map(|(_, v)| v);
        if let (Some(tag), Some(data)) = (tag, data) {
            let tag = tag
                .as_str()
                .ok_or_else(|| Error::decode("`_type_` is not a string"))?;
            let text = data.as_str();
            return match (tag, text) {
                (UUID_TAG, Some(t)) => parse_uuid(t)
                    .map(Value::Uuid)
                    .ok_or_else(|| Error::decode(format!("invalid uuid_hex value {t:?}"))),
                (DATETIME_TAG, Some(t)) => Ok(Value::DateTime(t.to_owned())),
                (DECIMAL_TAG, Some(t)) => Ok(Value::Decimal(t.to_owned())),
                (UUID_TAG | DATETIME_TAG | DECIMAL_TAG, None) => {
                    Err(Error::decode(format!("`_data_` of {tag} is not a string")))
                }
                _ => Err(Error::decode(format!("unknown typed value {tag:?}"))),
            };
        }
    }
    Ok(Value::Dict(items))
}

/// Parses a UUID as Python's `UUID(text)` does (hex with optional hyphens,
/// braces and `urn:uuid:` prefix).
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let t = text.trim();
    let t = t.strip_prefix("urn:").unwrap_or(t);
    let t = t.strip_prefix("uuid:").unwrap_or(t);
    let t = t.trim_matches(|c| c == '{' || c == '}');
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(&hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> String {
        let mut s = String::new();
        write_float(x, &mut s);
        s
    }

    #[test]
    fn floats_match_python_repr() {
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(0.0), "0.0");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(100.0), "100.0");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1.5e16), "1.5e+16");
        assert_eq!(f(1e15), "1000000000000000.0");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00001), "1e-05");
        assert_eq!(f(1.2345e-7), "1.2345e-07");
        assert_eq!(f(1e100), "1e+100");
        assert_eq!(f(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(f(123456789012345.6), "123456789012345.6");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f(5e-324), "5e-324");
    }

    #[test]
    fn strings_escape_like_python() {
        let mut s = String::new();
        write_str("a\"b\\c\nd\u{1}é\u{7f}\u{2028}", &mut s);
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\u{2028}\"");
    }

    #[test]
    fn round_trip_nested_typed_values() {
        let u = Uuid::parse_str("724e55e58b044a2fa7b2cc652e955e43").unwrap();
        let v = Value::Dict(vec![
            ("z".into(), Value::Int(1)),
            (
                "a".into(),
                Value::List(vec![
                    Value::Uuid(u),
                    Value::DateTime("2026-11-27T04:40:48+00:00".into()),
                ]),
            ),
            (
                "big".into(),
                Value::BigInt("-123456789012345678901234567890".into()),
            ),
            ("nan".into(), Value::Float(f64::NAN)),
            ("uni".into(), Value::Str("ü 漢字 🎉".into())),
        ]);
        let text = encode(&v);
        assert_eq!(
            text,
            "{\"z\":1,\"a\":[{\"_type_\":\"uuid_hex\",\"_data_\":\"724e55e58b044a2fa7b2cc652e955e43\"},\
             {\"_type_\":\"datetime_iso\",\"_data_\":\"2026-11-27T04:40:48+00:00\"}],\
             \"big\":-123456789012345678901234567890,\"nan\":NaN,\"uni\":\"ü 漢字 🎉\"}"
        );
        let back = decode(text.as_bytes()).unwrap();
        // NaN != NaN, so compare the re-encoded text.
        assert_eq!(encode(&back), text);
    }

    #[test]
    fn decodes_python_escapes_and_surrogate_pairs() {
        let v = decode(br#"{"s":"\ud83c\udf89\u00e9\/"}"#).unwrap();
        assert_eq!(v.get("s").unwrap().as_str(), Some("🎉é/"));
        assert!(decode(br#""\ud800""#).is_err());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"{",
            b"[1,",
            b"\"abc",
            b"{\"a\"}",
            b"nul",
            b"01x",
            b"\xff",
            b"{\"_type_\":\"x\",\"_data_\":1}",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_keep_their_python_types() {
        assert_eq!(decode(b"1e5").unwrap(), Value::Float(100000.0));
        assert_eq!(decode(b"-7").unwrap(), Value::Int(-7));
        assert_eq!(
            decode(b"9223372036854775808").unwrap(),
            Value::BigInt("9223372036854775808".into())
        );
        assert_eq!(decode(b"Infinity").unwrap(), Value::Float(f64::INFINITY));
    }
}
