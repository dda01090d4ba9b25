//! JSON text written straight into a buffer, for outputs rebuilt on every change
//! (incident updates): no value tree is built, copied and dropped on the way. The text is
//! what serde_json writes for the same values: strings and numbers go through its
//! serializer, and a non-finite number is `null`, as `serde_json::Value::from` makes it.

use serde::Serialize;

/// A JSON document being written: values, keys and the brackets around them, with the
/// commas put in between.
#[derive(Debug)]
pub struct JsonText {
    buf: Vec<u8>,
    /// The next item is the first of its object or array, or a key's value: no comma.
    fresh: bool,
}

impl JsonText {
    pub fn with_capacity(n: usize) -> JsonText {
        JsonText {
            buf: Vec::with_capacity(n),
            fresh: true,
        }
    }

    /// Writes into `buf`, emptied first, reusing its memory.
    pub fn over(mut buf: Vec<u8>) -> JsonText {
        buf.clear();
        JsonText { buf, fresh: true }
    }

    /// Writes more values after those already in `buf`, with a comma between: a list
    /// of items kept to be spliced into an array with [`JsonText::raw_items`].
    pub fn after(buf: Vec<u8>) -> JsonText {
        let fresh = buf.is_empty();
        JsonText { buf, fresh }
    }

    /// Ends a value written at the top: the next one starts without a comma. The length
    /// of the text so far.
    pub fn end_value(&mut self) -> usize {
        self.fresh = true;
        self.buf.len()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn item(&mut self) {
        if !self.fresh {
            self.buf.push(b',');
        }
        self.fresh = false;
    }

    pub fn begin_object(&mut self) -> &mut Self {
        self.open(b'{')
    }

    pub fn end_object(&mut self) -> &mut Self {
        self.close(b'}')
    }

    pub fn begin_array(&mut self) -> &mut Self {
        self.open(b'[')
    }

    pub fn end_array(&mut self) -> &mut Self {
        self.close(b']')
    }

    fn open(&mut self, bracket: u8) -> &mut Self {
        self.item();
        self.buf.push(bracket);
        self.fresh = true;
        self
    }

    fn close(&mut self, bracket: u8) -> &mut Self {
        self.buf.push(bracket);
        self.fresh = false;
        self
    }

    /// An object's key; the next value written is its value.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.item();
        self.serialize(k);
        self.buf.push(b':');
        self.fresh = true;
        self
    }

    /// Any serializable value (a string, a number, a bool, an `Option`, a
    /// `serde_json::Value`), as serde_json writes it.
    pub fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> &mut Self {
        self.item();
        self.serialize(v);
        self
    }

    /// A value written before, as its JSON text.
    pub fn raw(&mut self, json: &[u8]) -> &mut Self {
        self.item();
        self.buf.extend_from_slice(json);
        self
    }

    /// Values written before as a comma-separated list (see [`JsonText::after`]), as
    /// items of the array being written; nothing when the list is empty.
    pub fn raw_items(&mut self, items: &[u8]) -> &mut Self {
        if !items.is_empty() {
            self.raw(items);
        }
        self
    }

    /// A number; `null` when it is not finite.
    pub fn f64(&mut self, x: f64) -> &mut Self {
        self.value(&Some(x).filter(|x| x.is_finite()))
    }

    /// `key` and its value.
    pub fn field<T: Serialize + ?Sized>(&mut self, k: &str, v: &T) -> &mut Self {
        self.key(k).value(v)
    }

    fn serialize<T: Serialize + ?Sized>(&mut self, v: &T) {
        // writing into a Vec cannot fail, and these values have no map with non-string keys
        serde_json::to_writer(&mut self.buf, v).expect("JSON into memory");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::JsonText;

    #[test]
    fn writes_what_serde_json_writes() {
        let mut w = JsonText::with_capacity(64);
        w.begin_object()
            .field("s", "quote \" and \\ and \n and \u{1}")
            .field("n", &7u64)
            .field("neg", &-3i64)
            .key("x")
            .f64(0.1 + 0.2)
            .key("whole")
            .f64(2.0)
            .key("nan")
            .f64(f64::NAN)
            .field("none", &None::<&str>)
            .field("yes", &true)
            .key("list")
            .begin_array();
        for i in 0..3u64 {
            w.begin_object()
                .field("i", &i)
                .key("empty")
                .begin_array()
                .end_array()
                .end_object();
        }
        w.end_array()
            .key("nested")
            .value(&json!({"a": [1, null, "b"]}))
            .key("empty")
            .begin_object()
            .end_object()
            .end_object();
        let expected = json!({
            "s": "quote \" and \\ and \n and \u{1}",
            "n": 7,
            "neg": -3,
            "x": 0.1 + 0.2,
            "whole": 2.0,
            "nan": f64::NAN,
            "none": null,
            "yes": true,
            "list": [{"i": 0, "empty": []}, {"i": 1, "empty": []}, {"i": 2, "empty": []}],
            "nested": {"a": [1, null, "b"]},
            "empty": {},
        });
        assert_eq!(String::from_utf8(w.into_bytes()).unwrap(), expected.to_string());
    }
}
