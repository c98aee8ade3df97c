//! The value model of event payloads: what Python's `json` module plus the
//! eventsourcing transcodings (`uuid_hex`, `datetime_iso`, `decimal_str`) can
//! hold, with nothing lost on a round trip.

use uuid::Uuid;

/// One JSON value as BIOMERO's event store holds it.
///
/// Integers that do not fit in 64 bits keep their decimal digits (`BigInt`),
/// datetimes and decimals keep the exact text Python wrote, and dictionaries
/// keep the caller's key order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Decimal digits (with an optional leading `-`) of an integer beyond i64.
    BigInt(String),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Dict(Vec<(String, Value)>),
    Uuid(Uuid),
    /// Python `datetime.isoformat()` text.
    DateTime(String),
    /// Python `str(Decimal)` text.
    Decimal(String),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Looks up a key of a dictionary value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as Python's `str()` would show a str or an int; used where the
    /// reference accepted either (job ids).
    pub fn to_plain_string(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::BigInt(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<Uuid> for Value {
    fn from(u: Uuid) -> Self {
        Value::Uuid(u)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
