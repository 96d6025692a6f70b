//! A JSON tree that borrows from the page body: strings and keys without escapes point into
//! the bytes, objects are plain vectors. Parsing a page allocates a few vectors per record
//! instead of a string per key and value, which is what makes pages cheap to read.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub use crate::domain::RecordsAt;

pub(crate) type Obj<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    Obj(Obj<'a>),
}

impl<'a> Json<'a> {
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub(crate) fn is_object(&self) -> bool {
        matches!(self, Json::Obj(_))
    }

    #[cfg(test)]
    pub(crate) fn as_obj(&self) -> Option<&Obj<'a>> {
        match self {
            Json::Obj(o) => Some(o),
            _ => None,
        }
    }

    /// The first member named `key` (objects are small; a scan beats hashing here).
    pub(crate) fn get<'s>(obj: &'s Obj<'a>, key: &str) -> Option<&'s Json<'a>> {
        obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Compact JSON text, for error messages and text ids.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::I64(n) => write!(f, "{n}"),
            Json::U64(n) => write!(f, "{n}"),
            Json::F64(n) => write!(f, "{n}"),
            Json::Str(s) => write!(f, "{}", serde_json::Value::String(s.to_string())),
            Json::Arr(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Json::Obj(members) => {
                f.write_str("{")?;
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{v}", serde_json::Value::String(k.to_string()))?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A string that borrows when the input holds it without escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> de::Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::I64(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(match i64::try_from(n) {
            Ok(i) => Json::I64(i),
            Err(_) => Json::U64(n),
        })
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Json::F64(n))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(CowStr(k)) = map.next_key()? {
            members.push((k, map.next_value()?));
        }
        Ok(Json::Obj(members))
    }
}

/// An owned copy of a `serde_json::Value`, for tests that build records with `json!`.
#[cfg(test)]
pub(crate) fn lite(v: serde_json::Value) -> Json<'static> {
    use serde_json::Value;
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Json::I64(i),
            (None, Some(u)) => Json::U64(u),
            _ => Json::F64(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Json::Str(Cow::Owned(s)),
        Value::Array(a) => Json::Arr(a.into_iter().map(lite).collect()),
        Value::Object(m) => Json::Obj(
            m.into_iter()
                .map(|(k, v)| (Cow::Owned(k), lite(v)))
                .collect(),
        ),
    }
}

/// Every record of a page, parsed whole (tests and the throughput bench).
#[cfg(test)]
pub(crate) fn parse_page(body: &[u8], at: RecordsAt) -> Result<Vec<Json<'_>>, serde_json::Error> {
    let mut records = Vec::new();
    for_each_record(body, at, &mut |rec| {
        records.push(rec);
        Ok(())
    })?;
    Ok(records)
}

/// The error of a parse that `each` stopped.
const STOPPED: &str = "stopped at a refused record";

/// Calls `each` with the records of a page in order, each as soon as it is parsed: one
/// record's tree is alive at a time, not the whole page's. `each` returning `Err` stops the
/// parse. The records are the body (an array) or the array member `name` of the top-level
/// object (`RecordsAt`); a second member of that name is refused.
pub(crate) fn for_each_record<'de>(
    body: &'de [u8],
    at: RecordsAt,
    each: &mut dyn FnMut(Json<'de>) -> Result<(), ()>,
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match at {
        RecordsAt::Body => EachRecord(each).deserialize(&mut de)?,
        RecordsAt::Member(name) => Member(name, EachRecord(each)).deserialize(&mut de)?,
    }
    de.end()
}

/// Hands each element of an array to a callback.
struct EachRecord<'f, 'de>(&'f mut dyn FnMut(Json<'de>) -> Result<(), ()>);

impl<'de> DeserializeSeed<'de> for EachRecord<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EachRecord<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(rec) = seq.next_element::<Json<'de>>()? {
            (self.0)(rec).map_err(|()| de::Error::custom(STOPPED))?;
        }
        Ok(())
    }
}

/// Finds the member `name` of the top-level object and reads it with the seed, skipping the
/// other members.
struct Member<S>(&'static str, S);

impl<'de, S: DeserializeSeed<'de, Value = ()>> DeserializeSeed<'de> for Member<S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: DeserializeSeed<'de, Value = ()>> Visitor<'de> for Member<S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a '{}' array", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Member(name, seed) = self;
        let mut seed = Some(seed);
        while let Some(CowStr(k)) = map.next_key()? {
            if k != name {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            }
            match seed.take() {
                Some(seed) => map.next_value_seed(seed)?,
                None => return Err(de::Error::custom(format!("more than one '{name}' member"))),
            }
        }
        match seed {
            Some(_) => Err(de::Error::custom(format!("no '{name}' member"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_handed_over_one_at_a_time_and_a_refusal_stops_the_parse() {
        let body = br#"{"x":1,"result":[{"n":1},{"n":2},{"n":3}],"y":[]}"#;
        let mut seen = Vec::new();
        let err = for_each_record(body, RecordsAt::Member("result"), &mut |rec| {
            seen.push(rec.to_string());
            if seen.len() == 2 { Err(()) } else { Ok(()) }
        })
        .unwrap_err();
        assert_eq!(seen, vec![r#"{"n":1}"#, r#"{"n":2}"#]);
        assert!(err.to_string().contains(STOPPED), "{err}");
        let twice = br#"{"result":[{"n":1}],"result":[{"n":2}]}"#;
        let err = parse_page(twice, RecordsAt::Member("result")).unwrap_err();
        assert!(
            err.to_string().contains("more than one 'result' member"),
            "{err}"
        );
        let none = br#"{"records":[]}"#;
        let err = parse_page(none, RecordsAt::Member("result")).unwrap_err();
        assert!(err.to_string().contains("no 'result' member"), "{err}");
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_body() {
        let body = br#"[{"a":"plain","b":"esc\"aped","n":-3,"u":18446744073709551615,"f":1.5,"z":null,"x":[true]}]"#;
        let recs = parse_page(body, RecordsAt::Body).unwrap();
        let Json::Obj(o) = &recs[0] else { panic!() };
        assert!(matches!(
            Json::get(o, "a"),
            Some(Json::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(Json::get(o, "b"), Some(Json::Str(Cow::Owned(s))) if s == "esc\"aped"));
        assert_eq!(Json::get(o, "n"), Some(&Json::I64(-3)));
        assert_eq!(Json::get(o, "u"), Some(&Json::U64(u64::MAX)));
        assert_eq!(
            recs[0].to_string(),
            r#"{"a":"plain","b":"esc\"aped","n":-3,"u":18446744073709551615,"f":1.5,"z":null,"x":[true]}"#
        );
    }

    #[test]
    fn records_can_sit_under_a_member_and_bad_bodies_are_refused() {
        let body = br#"{"totalSize":2,"records":[{"Id":"a"},{"Id":"b"}],"done":true}"#;
        assert_eq!(
            parse_page(body, RecordsAt::Member("records"))
                .unwrap()
                .len(),
            2
        );
        assert!(parse_page(br#"{"result":[]}"#, RecordsAt::Member("records")).is_err());
        let cut = parse_page(br#"[{"id":1},{"id""#, RecordsAt::Body).unwrap_err();
        assert!(cut.is_eof());
        assert!(!parse_page(b"<html>", RecordsAt::Body).unwrap_err().is_eof());
    }
}
