//! Lenient deserializers for API fields whose JSON type varies between API generations.
//!
//! CXone's older Reporting API versions (and its 2016-era mocks) send every value as a string:
//! `"123"`, `"True"`, `"0"`. Newer versions send native JSON numbers and booleans. Cognigy sends
//! `inputData` as a JSON-encoded string in OData and as an object over REST. Numbers sent as
//! strings may carry thousands separators (`"1,234"`, as formatted by reporting exports). These
//! helpers accept every documented variant and name the offending value when none fits. They do not coerce
//! anything else: a field that is an object where a number belongs is an error, not a zero.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// Parses an ISO-8601 timestamp: RFC 3339 with `Z` or an offset, or a naive date-time taken as UTC
/// (CXone documents UTC-only date-times and some payloads omit the zone).
/// Years outside 1970..=9999 are refused: no contact or session lives there, and keeping times in
/// that range means adding any configured duration to them can never overflow.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    let parsed = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
                .map(|t| t.and_utc())
        })?;
    (1970..=9999)
        .contains(&chrono::Datelike::year(&parsed))
        .then_some(parsed)
}

/// A numeric string with thousands separators (`"1,234"`, `"-12,345,678.5"`) without them; `None`
/// when the commas are not exactly every three digits of the integer part (`"1,5"` stays
/// ambiguous, a decimal comma or a list, and is refused by the caller).
fn without_thousands_separators(text: &str) -> Option<String> {
    if !text.contains(',') {
        return None;
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let mut groups = integer.split(',');
    let first = groups.next()?;
    let digits = |g: &str| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit());
    if !(digits(first) && first.len() <= 3) {
        return None;
    }
    if !groups.all(|g| g.len() == 3 && digits(g)) {
        return None;
    }
    if fraction.is_some_and(|f| !digits(f)) {
        return None;
    }
    Some(text.replace(',', ""))
}

struct I64Visitor;

impl<'de> Visitor<'de> for I64Visitor {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer, a numeric string or null")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Some(v as i64))
        } else {
            Err(E::custom(format!("expected an integer, got {v}")))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let plain = without_thousands_separators(t);
        let t = plain.as_deref().unwrap_or(t);
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Some(n));
        }
        match t.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(E::custom(format!("expected an integer, got string {v:?}"))),
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// An integer that may arrive as a number or a numeric string; `null`, `""` and absence give 0.
pub fn i64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(d.deserialize_any(I64Visitor)?.unwrap_or(0))
}

/// An integer that may arrive as a number or a numeric string; `null` and `""` give `None`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(I64Visitor)
}

/// A required integer (number or numeric string); `null` or `""` is an error.
pub fn i64_required<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(I64Visitor)?
        .ok_or_else(|| de::Error::custom("expected an integer, got null or an empty string"))
}

struct F64Visitor;

impl<'de> Visitor<'de> for F64Visitor {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a numeric string or null")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        let plain = without_thousands_separators(t);
        let t = plain.as_deref().unwrap_or(t);
        // `f64::from_str` also takes "inf" and "NaN", which no API means as a number.
        match t.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(E::custom(format!("expected a number, got string {v:?}"))),
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A number that may arrive as a number or a numeric string; `null`, `""` and absence give 0.
pub fn f64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(d.deserialize_any(F64Visitor)?.unwrap_or(0.0))
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean, \"True\"/\"False\", 0/1 or null")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v != 0))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v != 0))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            "" => Ok(None),
            _ => Err(E::custom(format!("expected a boolean, got string {v:?}"))),
        }
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A boolean that may arrive as `true`, `"True"`, `"false"`, `0`/`1`; `null` and absence give false.
pub fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(d.deserialize_any(BoolVisitor)?.unwrap_or(false))
}

/// A string that may arrive as a string, a number or null (CXone types some names as numbers).
pub fn string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::Bool(b)) => b.to_string(),
        Some(other) => {
            return Err(de::Error::custom(format!(
                "expected a string, got {}",
                json_kind(&other)
            )))
        }
    })
}

/// An id that may be a string or a number; kept as text (Cognigy ids, CXone ids in state history).
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = string_or_empty(d)?;
    Ok(if s.is_empty() { None } else { Some(s) })
}

/// A required timestamp (see [`parse_timestamp`]).
pub fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_timestamp(&text)
        .ok_or_else(|| de::Error::custom(format!("expected an ISO-8601 timestamp, got {text:?}")))
}

/// An optional timestamp: `null`, `""` and absence give `None`; anything else must parse.
pub fn opt_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => parse_timestamp(t)
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("expected an ISO-8601 timestamp, got {t:?}"))),
    }
}

/// Names a JSON value's type for error messages.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Numbers {
        #[serde(deserialize_with = "i64_or_zero")]
        int: i64,
        #[serde(deserialize_with = "f64_or_zero")]
        float: f64,
    }

    fn numbers(int: &str, float: &str) -> Result<Numbers, serde_json::Error> {
        serde_json::from_value(serde_json::json!({"int": int, "float": float}))
    }

    /// Numbers written with thousands separators parse; commas anywhere else are refused with
    /// the value named.
    #[test]
    fn thousands_separators_parse() {
        let n = numbers("1,234", "12,345,678.5").expect("parses");
        assert_eq!((n.int, n.float), (1234, 12_345_678.5));
        let n = numbers("-1,000,000", "+999").expect("parses");
        assert_eq!((n.int, n.float), (-1_000_000, 999.0));
        for bad in ["1,5", "1,23", "12,3456", ",123", "1,,234", "1,234,"] {
            let error = numbers(bad, "0").expect_err(bad).to_string();
            assert!(error.contains(bad), "{error}");
        }
        assert!(numbers("0", "1,5").is_err(), "a decimal comma is ambiguous");
    }
}
