//! JSON written as Python's `json.dumps(obj, indent=N)` writes it (ASCII only, `": "` and `","`
//! separators), so upstream's tooling and byte-level diffs read our files as its own.

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

struct PyFormatter<'a>(PrettyFormatter<'a>);

impl Formatter for PyFormatter<'_> {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `json.dumps(value, indent=indent)` (Python's defaults otherwise: `ensure_ascii=True`, keys in
/// the order the value serialises them).
pub fn to_python_json<T: Serialize + ?Sized>(value: &T, indent: usize) -> String {
    let spaces = " ".repeat(indent);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        PyFormatter(PrettyFormatter::with_indent(spaces.as_bytes())),
    );
    value.serialize(&mut ser).expect("serialising plain data to memory cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_python() {
        let v = serde_json::json!({"a": ["é😀\u{7f}\n", []], "b": {}});
        assert_eq!(
            to_python_json(&v, 4),
            "{\n    \"a\": [\n        \"\\u00e9\\ud83d\\ude00\\u007f\\n\",\n        []\n    ],\n    \"b\": {}\n}"
        );
    }
}
