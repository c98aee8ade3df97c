//! Conversions of event values into view columns, with the rules for
//! values that the columns cannot hold (docs/projections.md, "Rules for
//! every view").
//!
//! (What projectors read from the event log — a task's TaskCreated, its
//! latest job id, a workflow's tasks — is looked up in `facts.rs`.)

use crate::domain::codec;
use crate::domain::Value;

// ------------------------------------------------------ column conversions

/// A value for a 32-bit INTEGER column: `Ok(None)` for None, `Err` (a
/// description for the warning) for anything the column cannot hold.
pub fn int_column(v: &Value) -> std::result::Result<Option<i32>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Int(i) => i32::try_from(*i)
            .map(Some)
            .map_err(|_| format!("{i} is outside the 32-bit integer range")),
        Value::BigInt(digits) => Err(format!("{digits} is outside the 32-bit integer range")),
        other => Err(format!("{} is not an integer", codec::encode(other))),
    }
}

/// A value for a VARCHAR column, as Python's `str()` shows a str or a number
/// (what SQLAlchemy stores for them). `Err` (a description) for other types.
pub fn text_column(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        Value::Int(i) => Ok(Some(i.to_string())),
        Value::BigInt(d) => Ok(Some(d.clone())),
        Value::Float(f) => {
            let mut s = String::new();
            codec::write_float(*f, &mut s);
            Ok(Some(s.replace("Infinity", "inf").replace("NaN", "nan")))
        }
        other => Err(format!("{} is not text", codec::encode(other))),
    }
}

/// A Slurm job id as the INTEGER key of the job views: base-10 digits with
/// an optional sign and surrounding whitespace, within 32 bits. `Err` (a
/// description) otherwise, e.g. for array job ids such as `12345_7`.
pub fn job_id_column(v: &Value) -> std::result::Result<i32, String> {
    let text = match v {
        Value::Str(s) => s.as_str(),
        Value::Int(i) => {
            return i32::try_from(*i)
                .map_err(|_| format!("job id {i} is outside the 32-bit integer range"))
        }
        Value::BigInt(d) => return Err(format!("job id {d} is outside the 32-bit integer range")),
        other => return Err(format!("job id {} is not an integer", codec::encode(other))),
    };
    let t = text.trim_matches(is_python_space);
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("job id {text:?} is not a base-10 integer"));
    }
    match t.parse::<i64>() {
        Ok(i) => i32::try_from(i)
            .map_err(|_| format!("job id {text:?} is outside the 32-bit integer range")),
        Err(_) => Err(format!(
            "job id {text:?} is outside the 32-bit integer range"
        )),
    }
}

/// Whitespace as Python's `str.strip()` and `int()` see it.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The first code point ("zero") of each run of ten Unicode decimal digits
/// (general category Nd) that Python 3.11's `int()` accepts (Unicode 14.0).
const DECIMAL_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66,
    0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90,
    0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

/// The value of a Unicode decimal digit, as `unicodedata.decimal`.
fn decimal_digit(c: char) -> Option<u32> {
    let cp = c as u32;
    let i = DECIMAL_ZEROS.partition_point(|z| *z <= cp);
    let zero = *DECIMAL_ZEROS.get(i.checked_sub(1)?)?;
    (cp - zero < 10).then_some(cp - zero)
}

/// Python's `int(text)` for base 10: surrounding whitespace (not the
/// separators \x1c-\x1f that `str.strip()` also removes), one optional sign,
/// decimal digits of any script with single underscores between them, at
/// most 4300 digits (Python's default limit). Returns the sign and the ASCII
/// digits.
pub fn python_int(text: &str) -> Option<(bool, String)> {
    let t = text.trim_matches(char::is_whitespace);
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut digits = String::with_capacity(body.len());
    let mut prev_digit = false;
    for c in body.chars() {
        match c {
            '_' if prev_digit => prev_digit = false,
            c => {
                let d = decimal_digit(c)?;
                digits.push(char::from_digit(d, 10)?);
                prev_digit = true;
            }
        }
    }
    if digits.is_empty() || !prev_digit || digits.len() > 4300 {
        return None;
    }
    Some((negative, digits))
}

/// The workflow progress of a generic task's status update, as the
/// reference interpolates it: `50 + (int(p.strip('%')) / 100) * 40`,
/// formatted as Python's `f"{x}%"`. `None` where the reference would raise
/// (not a str, not an integer, a quotient too large for a float).
pub fn interpolate_progress(task_progress: &Value) -> Option<String> {
    let text = task_progress.as_str()?;
    let (negative, digits) = python_int(text.trim_matches('%'))?;
    // `int / 100` is correctly rounded in Python; so is parsing the decimal.
    let quotient: f64 = format!("{}{digits}e-2", if negative { "-" } else { "" })
        .parse()
        .ok()?;
    if !quotient.is_finite() {
        return None;
    }
    let x = 50.0 + quotient * 40.0;
    let mut out = String::new();
    codec::write_float(x, &mut out);
    out.push('%');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_int_accepts_what_int_accepts() {
        assert_eq!(python_int(" 43 "), Some((false, "43".into())));
        assert_eq!(python_int("+1_000"), Some((false, "1000".into())));
        assert_eq!(python_int("-007"), Some((true, "007".into())));
        assert_eq!(python_int("\t12\n"), Some((false, "12".into())));
        for bad in [
            "", " ", "43.5", "1__0", "_1", "1_", "+", "4 3", "0x10", "--1", "1e3",
        ] {
            assert_eq!(python_int(bad), None, "{bad:?}");
        }
        assert_eq!(python_int(&"9".repeat(4301)), None);
        assert_eq!(python_int("\u{664}\u{663}"), Some((false, "43".into())));
        assert_eq!(python_int("+\u{ff14}_\u{ff13}"), Some((false, "43".into())));
        assert_eq!(python_int("\u{1d7ce}\u{1d7d9}"), Some((false, "01".into())));
        assert_eq!(python_int("\u{1c}43"), None);
        assert_eq!(python_int("43\u{1f}"), None);
        assert_eq!(python_int("\u{a0}43\u{3000}"), Some((false, "43".into())));
    }

    #[test]
    fn interpolation_is_formatted_like_python() {
        let p = |s: &str| interpolate_progress(&Value::Str(s.into()));
        assert_eq!(p("43%").as_deref(), Some("67.2%"));
        assert_eq!(p("50%").as_deref(), Some("70.0%"));
        assert_eq!(p("0").as_deref(), Some("50.0%"));
        assert_eq!(p("100%").as_deref(), Some("90.0%"));
        assert_eq!(p("%%7%").as_deref(), Some("52.8%"));
        assert_eq!(p("33%").as_deref(), Some("63.2%"));
        assert_eq!(p("-10%").as_deref(), Some("46.0%"));
        assert_eq!(p("1_0%").as_deref(), Some("54.0%"));
        assert_eq!(p("43.5%"), None);
        assert_eq!(p("43 %").as_deref(), Some("67.2%"));
        assert_eq!(p("43% "), None);
        assert_eq!(interpolate_progress(&Value::Int(43)), None);
        assert_eq!(p(&"9".repeat(400)), None);
        assert_eq!(p("100000000000000000000").as_deref(), Some("4e+19%"));
    }

    #[test]
    fn job_ids() {
        assert_eq!(job_id_column(&Value::Str("12345".into())), Ok(12345));
        assert_eq!(job_id_column(&Value::Str(" 12345\n".into())), Ok(12345));
        assert_eq!(job_id_column(&Value::Int(7)), Ok(7));
        assert!(job_id_column(&Value::Str("12345_7".into())).is_err());
        assert!(job_id_column(&Value::Str("1_2".into())).is_err());
        assert!(job_id_column(&Value::Str("2147483648".into())).is_err());
        assert_eq!(
            job_id_column(&Value::Str("2147483647".into())),
            Ok(i32::MAX)
        );
        assert!(job_id_column(&Value::Str("".into())).is_err());
        assert!(job_id_column(&Value::Null).is_err());
    }
}
