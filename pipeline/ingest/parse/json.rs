//! Lenient JSON scalars: a record's fields are read without failing, so that a
//! bad value is rejected with the name of its field instead of a serde error.

use std::borrow::Cow;
use std::fmt;

use chrono_tz::Tz;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::time::{from_epoch, parse_iso};
use super::{Reject, RejectReason};
use crate::model::time::Ts;

/// Any JSON value, kept only as far as meter reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Scalar<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An object or array where a scalar was expected.
    Nested,
}

impl<'de: 'a, 'a> de::Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                de::Deserialize::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Scalar<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }
}

/// A token count or other non-negative whole number. Numeric strings are
/// accepted; negative, fractional and non-numeric values are rejected.
pub fn count(field: &'static str, v: &Scalar) -> Result<Option<u64>, Reject> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::UInt(n) => Ok(Some(*n)),
        Scalar::Int(n) if *n >= 0 => Ok(Some(*n as u64)),
        Scalar::Int(n) => Err(Reject::value(field, format!("negative value {n}"))),
        Scalar::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15 => Ok(Some(*f as u64)),
        Scalar::Float(f) => Err(Reject::value(
            field,
            format!("{f} is not a non-negative whole number"),
        )),
        Scalar::Str(s) => match s.trim().parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) if s.trim().starts_with('-') => {
                Err(Reject::value(field, format!("negative value {s:?}")))
            }
            Err(_) => Err(Reject::value(field, format!("{s:?} is not a number"))),
        },
        Scalar::Bool(_) | Scalar::Nested => Err(Reject::value(field, "expected a number")),
    }
}

/// A count that fits the lake's BIGINT columns.
pub fn count_i64(field: &'static str, v: &Scalar) -> Result<Option<i64>, Reject> {
    match count(field, v)? {
        Some(n) => i64::try_from(n)
            .map(Some)
            .map_err(|_| Reject::value(field, format!("{n} is too large"))),
        None => Ok(None),
    }
}

/// A number that may be fractional (durations, percentages).
pub fn number(field: &'static str, v: &Scalar) -> Result<Option<f64>, Reject> {
    let f = match v {
        Scalar::Null => return Ok(None),
        Scalar::UInt(n) => *n as f64,
        Scalar::Int(n) => *n as f64,
        Scalar::Float(f) => *f,
        Scalar::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| Reject::value(field, format!("{s:?} is not a number")))?,
        Scalar::Bool(_) | Scalar::Nested => return Err(Reject::value(field, "expected a number")),
    };
    if f.is_finite() {
        Ok(Some(f))
    } else {
        Err(Reject::value(field, "not a finite number"))
    }
}

/// A small integer such as a status or exit code.
pub fn int32(field: &'static str, v: &Scalar) -> Result<Option<i32>, Reject> {
    let n = match v {
        Scalar::Null => return Ok(None),
        Scalar::UInt(n) => i64::try_from(*n).unwrap_or(i64::MAX),
        Scalar::Int(n) => *n,
        Scalar::Float(f) if f.fract() == 0.0 => *f as i64,
        Scalar::Str(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| Reject::value(field, format!("{s:?} is not a whole number")))?,
        _ => return Err(Reject::value(field, "expected a whole number")),
    };
    i32::try_from(n)
        .map(Some)
        .map_err(|_| Reject::value(field, format!("{n} is out of range")))
}

/// Text, or a number written as text. Empty strings are absent.
pub fn text<'a>(v: &'a Scalar) -> Option<Cow<'a, str>> {
    match v {
        Scalar::Str(s) if !s.is_empty() => Some(Cow::Borrowed(s.as_ref())),
        Scalar::Int(n) => Some(Cow::Owned(n.to_string())),
        Scalar::UInt(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

pub fn boolean(field: &'static str, v: &Scalar) -> Result<Option<bool>, Reject> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::Bool(b) => Ok(Some(*b)),
        Scalar::Str(s) if s == "true" => Ok(Some(true)),
        Scalar::Str(s) if s == "false" => Ok(Some(false)),
        _ => Err(Reject::value(field, "expected true or false")),
    }
}

/// A required timestamp: RFC 3339 text (local time in `tz` without an
/// offset) or a Unix epoch number.
pub fn timestamp(field: &'static str, v: &Scalar, tz: Tz) -> Result<Ts, Reject> {
    match v {
        Scalar::Null => Err(Reject::missing(field)),
        Scalar::Str(s) => parse_iso(s.trim(), tz)
            .ok_or_else(|| Reject::timestamp(field, format!("{s:?} is not an RFC 3339 timestamp"))),
        Scalar::Int(n) => from_epoch(*n)
            .ok_or_else(|| Reject::timestamp(field, format!("{n} is not a Unix time"))),
        Scalar::UInt(n) => i64::try_from(*n)
            .ok()
            .and_then(from_epoch)
            .ok_or_else(|| Reject::timestamp(field, format!("{n} is not a Unix time"))),
        _ => Err(Reject::timestamp(field, "expected an RFC 3339 timestamp")),
    }
}

/// Describes a serde_json error without echoing the line.
pub fn syntax_error(e: &serde_json::Error) -> Reject {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected JSON structure",
        serde_json::error::Category::Io => "unreadable JSON",
    };
    Reject::line(
        RejectReason::InvalidJson,
        format!("{what} at column {}", e.column()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(j: &str) -> Scalar<'_> {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn counts() {
        assert_eq!(count("f", &s("12")), Ok(Some(12)));
        assert_eq!(count("f", &s("\"12\"")), Ok(Some(12)));
        assert_eq!(count("f", &s("12.0")), Ok(Some(12)));
        assert_eq!(count("f", &s("null")), Ok(None));
        assert_eq!(
            count("f", &s("-1")).unwrap_err().detail,
            "negative value -1"
        );
        assert_eq!(
            count("f", &s("-1")).unwrap_err().reason,
            RejectReason::BadValue
        );
        assert_eq!(
            count("f", &s("\"abc\"")).unwrap_err().detail,
            "\"abc\" is not a number"
        );
        assert_eq!(count("f", &s("1.5")).unwrap_err().field, Some("f"));
        assert!(count("f", &s("{\"a\":1}")).is_err());
    }
}
