//! JSON values read straight from a payload, for the decoders of JSON encodings.
//!
//! `serde_json::Value` allocates every key and string and hashes each key into an
//! `IndexMap`; decoding spent most of its time doing that and freeing it again. Here keys
//! and strings borrow from the payload (they are copied only when they hold escapes),
//! numbers are `serde_json::Number`, and an object is a short list of pairs searched
//! linearly: records have a dozen keys, and each is looked up once. The names follow
//! `serde_json` (`Value`, `Map`, `remove`, `get`, `as_str`) so that the decoders read the
//! same; a repeated key keeps its first place and its last value, as `serde_json` does,
//! and `Display` writes the same JSON text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Number;

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Map<'a>),
}

/// A field's pair in a [`Map`], and the place of its key among the field's keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    pub key: usize,
    pair: usize,
}

/// A JSON object: its pairs in the order they came.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map<'a>(Vec<(Cow<'a, str>, Value<'a>)>);

impl<'a> Value<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }
}

impl<'a> Map<'a> {
    pub fn new() -> Self {
        Map(Vec::new())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Takes a key out. The order of the others may change (it is not kept by anything
    /// that takes keys out: the leftovers are sorted).
    pub fn remove(&mut self, key: &str) -> Option<Value<'a>> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(i).1)
    }

    /// Where each of `N` fields is: the pair of its most preferred key that is present
    /// and not null, and that key's place among the field's keys. `field` says which field
    /// a key fills and its place. One pass over the pairs, one `match` each, where taking
    /// the fields by their keys in turn searched the object once per key tried.
    pub fn find_fields<const N: usize>(&self, field: impl Fn(&str) -> Option<(usize, usize)>) -> [Option<Found>; N] {
        let mut best: [Option<Found>; N] = [None; N];
        for (pair, (k, v)) in self.0.iter().enumerate() {
            if let Some((f, key)) = field(k).filter(|_| !v.is_null()) {
                if best[f].is_none_or(|b| key < b.key) {
                    best[f] = Some(Found { key, pair });
                }
            }
        }
        best
    }

    /// Takes the value of a pair [`Map::find_fields`] found, leaving null in its place
    /// (which nothing reads: null values are dropped with the leftovers), so that the
    /// other pairs found stay where they were.
    pub fn take_found(&mut self, found: Found) -> Value<'a> {
        std::mem::replace(&mut self.0[found.pair].1, Value::Null)
    }

    /// Sets a key: in its old place if it is there, else last.
    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Value<'a>) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// A key that came more than once keeps its first place and its last value. Small
    /// objects are searched pair by pair; large ones through a sort of their keys, so
    /// that a record of a hundred thousand keys costs n log n, not n².
    fn merge_repeated_keys(&mut self) {
        let n = self.0.len();
        let pairs = &self.0;
        if n <= 16 && !(1..n).any(|i| pairs[..i].iter().any(|(k, _)| *k == pairs[i].0)) {
            return;
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| pairs[a].0.cmp(&pairs[b].0)); // stable: equal keys in order
        let mut gone = vec![false; n];
        let mut run = 0;
        for i in 1..=n {
            if i < n && self.0[order[i]].0 == self.0[order[run]].0 {
                continue;
            }
            if i - run > 1 {
                let last = std::mem::replace(&mut self.0[order[i - 1]].1, Value::Null);
                self.0[order[run]].1 = last;
                for &j in &order[run + 1..i] {
                    gone[j] = true;
                }
            }
            run = i;
        }
        let mut gone = gone.into_iter();
        self.0.retain(|_| !gone.next().unwrap_or(false));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

/// Pairs into a map, a repeated key as [`Map::insert`] would have it.
impl<'a> FromIterator<(Cow<'a, str>, Value<'a>)> for Map<'a> {
    fn from_iter<I: IntoIterator<Item = (Cow<'a, str>, Value<'a>)>>(pairs: I) -> Self {
        let mut map = Map(pairs.into_iter().collect());
        map.merge_repeated_keys();
        map
    }
}

/// More pairs, a repeated key as [`Map::insert`] would have it.
impl<'a> Extend<(Cow<'a, str>, Value<'a>)> for Map<'a> {
    fn extend<I: IntoIterator<Item = (Cow<'a, str>, Value<'a>)>>(&mut self, pairs: I) {
        self.0.extend(pairs);
        self.merge_repeated_keys();
    }
}

impl<'a> IntoIterator for Map<'a> {
    type Item = (Cow<'a, str>, Value<'a>);
    type IntoIter = std::vec::IntoIter<Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The JSON text, as `serde_json::Value` writes it.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(t) => s.serialize_str(t),
            Value::Array(items) => s.collect_seq(items),
            Value::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Value::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Value::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Value::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(access.size_hint().unwrap_or(8));
        while let Some(Key(k)) = access.next_key()? {
            pairs.push((k, access.next_value()?));
        }
        Ok(Value::Object(pairs.into_iter().collect()))
    }
}

/// An object key, borrowed when it can be.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Value<'_>, serde_json::Value) {
        (serde_json::from_str(text).unwrap(), serde_json::from_str(text).unwrap())
    }

    #[test]
    fn writes_the_json_text_serde_json_writes() {
        for text in [
            r#"{"a":1,"b":[true,null,2.5,-3],"c":{"d":"e\"f","g":1e300},"h":0.1,"i":18446744073709551615}"#,
            r#"[{"z":1,"a":2},"x",3.0]"#,
            r#"{"k":1,"k":2,"j":3}"#,
        ] {
            let (ours, theirs) = both(text);
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        }
    }

    #[test]
    fn strings_borrow_unless_they_hold_escapes() {
        let v: Value = serde_json::from_str(r#"{"plain":"abc","esc\u0041":"a\nb"}"#).unwrap();
        let Value::Object(m) = v else { panic!() };
        let pairs: Vec<_> = m.into_iter().collect();
        assert!(matches!(&pairs[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&pairs[0].1, Value::String(Cow::Borrowed("abc"))));
        assert!(matches!(&pairs[1].0, Cow::Owned(k) if k == "escA"));
        assert_eq!(pairs[1].1.as_str(), Some("a\nb"));
    }

    #[test]
    fn a_repeated_key_keeps_its_place_and_its_last_value() {
        let v: Value = serde_json::from_str(r#"{"k":1,"j":2,"k":3}"#).unwrap();
        let Value::Object(mut m) = v else { panic!() };
        assert_eq!(m.len(), 2);
        assert_eq!(m.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["k", "j"]);
        assert_eq!(m.remove("k").and_then(|v| v.as_f64()), Some(3.0));
        assert_eq!(m.remove("k"), None);
    }

    #[test]
    fn a_large_object_merges_repeated_keys_the_same_way() {
        // 40 keys (past the pair-by-pair search), k3 and k7 three times each
        let mut text: Vec<String> = (0..34).map(|i| format!("\"k{i}\":{i}")).collect();
        text.extend(["\"k3\":100", "\"k7\":101", "\"k3\":102", "\"k7\":103"].map(String::from));
        text.extend((34..36).map(|i| format!("\"k{i}\":{i}")));
        let text = format!("{{{}}}", text.join(","));
        let (ours, theirs) = both(&text);
        assert_eq!(ours.to_string(), theirs.to_string());
        let Value::Object(m) = ours else { panic!() };
        assert_eq!(m.len(), 36);
        assert_eq!(m.get("k3").and_then(Value::as_f64), Some(102.0));
        assert_eq!(m.get("k7").and_then(Value::as_f64), Some(103.0));
    }
}
