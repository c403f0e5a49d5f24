//! Python `str` semantics the reward depends on.
//!
//! Rust's standard library disagrees with Python in small ways that change rewards: Python's
//! `str.isspace` also counts the information separators `\x1c`..`\x1f`, and `str.splitlines`
//! breaks on eleven terminators (`\v`, `\f`, `\x1c`, `\x85`, `\u2028`, ...), not only `\n`. The
//! functions here follow CPython 3.11 (Unicode 14) exactly; `tests/golden/make_golden.py` checks
//! them against the interpreter.

/// The code points Python's `str.isspace()` (and `re`'s `\s`) accepts, sorted.
///
/// Generated with `[c for c in range(0x110000) if chr(c).isspace()]` on CPython 3.11.
const PY_WHITESPACE: [char; 29] = [
    '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}', ' ', '\u{85}', '\u{a0}',
    '\u{1680}', '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}',
    '\u{2007}', '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}',
    '\u{3000}',
];

/// The code point of digit zero of each run of ten Unicode decimal digits (category Nd) that
/// Python's `re` accepts for `\d` and `int()` accepts as digits, sorted.
///
/// Generated with `[c for c in range(0x110000) if re.match(r"\d", chr(c)) and
/// unicodedata.decimal(chr(c)) == 0]` on CPython 3.11 (Unicode 14); every run is contiguous.
const PY_DIGIT_ZEROS: [char; 66] = [
    '\u{30}',
    '\u{660}',
    '\u{6f0}',
    '\u{7c0}',
    '\u{966}',
    '\u{9e6}',
    '\u{a66}',
    '\u{ae6}',
    '\u{b66}',
    '\u{be6}',
    '\u{c66}',
    '\u{ce6}',
    '\u{d66}',
    '\u{de6}',
    '\u{e50}',
    '\u{ed0}',
    '\u{f20}',
    '\u{1040}',
    '\u{1090}',
    '\u{17e0}',
    '\u{1810}',
    '\u{1946}',
    '\u{19d0}',
    '\u{1a80}',
    '\u{1a90}',
    '\u{1b50}',
    '\u{1bb0}',
    '\u{1c40}',
    '\u{1c50}',
    '\u{a620}',
    '\u{a8d0}',
    '\u{a900}',
    '\u{a9d0}',
    '\u{a9f0}',
    '\u{aa50}',
    '\u{abf0}',
    '\u{ff10}',
    '\u{104a0}',
    '\u{10d30}',
    '\u{11066}',
    '\u{110f0}',
    '\u{11136}',
    '\u{111d0}',
    '\u{112f0}',
    '\u{11450}',
    '\u{114d0}',
    '\u{11650}',
    '\u{116c0}',
    '\u{11730}',
    '\u{118e0}',
    '\u{11950}',
    '\u{11c50}',
    '\u{11d50}',
    '\u{11da0}',
    '\u{16a60}',
    '\u{16ac0}',
    '\u{16b50}',
    '\u{1d7ce}',
    '\u{1d7d8}',
    '\u{1d7e2}',
    '\u{1d7ec}',
    '\u{1d7f6}',
    '\u{1e140}',
    '\u{1e2f0}',
    '\u{1e950}',
    '\u{1fbf0}',
];

/// The value of `ch` as a Python decimal digit (`re`'s `\d`, `int()`), if it is one.
pub fn digit_value(ch: char) -> Option<u32> {
    if ch.is_ascii_digit() {
        return Some(ch as u32 - '0' as u32);
    }
    let idx = PY_DIGIT_ZEROS.partition_point(|&zero| zero <= ch).checked_sub(1)?;
    let offset = ch as u32 - PY_DIGIT_ZEROS[idx] as u32;
    (offset < 10).then_some(offset)
}

/// A regex character class equal to Python's `\d` on `str` patterns.
pub(crate) fn digit_class() -> String {
    let mut class = String::from("[");
    for zero in PY_DIGIT_ZEROS {
        let nine = char::from_u32(zero as u32 + 9).expect("digit runs are valid code points");
        class.push_str(&format!("\\x{{{:x}}}-\\x{{{:x}}}", zero as u32, nine as u32));
    }
    class.push(']');
    class
}

/// A regex character class equal to Python's `\s` on `str` patterns (`str.isspace`).
pub(crate) fn space_class() -> String {
    let mut class = String::from("[");
    for ch in PY_WHITESPACE {
        class.push_str(&format!("\\x{{{:x}}}", ch as u32));
    }
    class.push(']');
    class
}

/// Python's `ch.isspace()`.
pub fn is_space(ch: char) -> bool {
    match ch {
        '\t'..='\r' | '\u{1c}'..='\u{20}' => true,
        c if (c as u32) < 0x85 => false,
        c => PY_WHITESPACE.binary_search(&c).is_ok(),
    }
}

/// Python's `s.strip()` with no argument: removes leading and trailing [`is_space`] characters.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Whether `ch` ends a line for Python's `str.splitlines` (`\r\n` is handled by the caller).
pub fn is_line_break(ch: char) -> bool {
    matches!(
        ch,
        '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Python's `s.splitlines()`: lines without their terminators.
///
/// Terminators are `\n`, `\r\n`, `\r`, `\v`, `\f`, `\x1c`, `\x1d`, `\x1e`, `\x85`, `\u2028` and
/// `\u2029`. A trailing terminator does not start an empty last line, so `"a\n"` and `"a"` both
/// give `["a"]`, and `""` gives no line at all.
pub fn splitlines(s: &str) -> SplitLines<'_> {
    SplitLines { rest: s, keepends: false }
}

/// Python's `s.splitlines(keepends=True)`: lines with their terminators.
pub fn splitlines_keepends(s: &str) -> SplitLines<'_> {
    SplitLines { rest: s, keepends: true }
}

/// Iterator returned by [`splitlines`] and [`splitlines_keepends`].
#[derive(Debug, Clone)]
pub struct SplitLines<'a> {
    rest: &'a str,
    keepends: bool,
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut idx = 0;
        while idx < bytes.len() {
            let byte = bytes[idx];
            // Fast path: every terminator is either an ASCII control byte or starts with 0xC2
            // (U+0085) or 0xE2 (U+2028, U+2029).
            if byte >= 0x20 && byte != 0xC2 && byte != 0xE2 {
                idx += 1;
                continue;
            }
            let ch = self.rest[idx..].chars().next().expect("index is on a char boundary");
            if is_line_break(ch) {
                let mut end = idx + ch.len_utf8();
                if ch == '\r' && bytes.get(end) == Some(&b'\n') {
                    end += 1;
                }
                let line = if self.keepends { &self.rest[..end] } else { &self.rest[..idx] };
                self.rest = &self.rest[end..];
                return Some(line);
            }
            idx += ch.len_utf8();
        }
        let line = self.rest;
        self.rest = "";
        Some(line)
    }
}

/// Python's `s.count(sub)` for a non-empty `sub`: non-overlapping occurrences, left to right.
pub fn count(s: &str, sub: &str) -> usize {
    if sub.is_empty() {
        // Python counts the empty string once per position, including the end.
        return s.chars().count() + 1;
    }
    s.matches(sub).count()
}

/// Python's `s.replace(old, new)`: every non-overlapping occurrence, left to right.
pub fn replace(s: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        // Python inserts `new` before every character and at the end.
        let mut out = String::with_capacity(s.len() + new.len() * (s.len() + 1));
        for ch in s.chars() {
            out.push_str(new);
            out.push(ch);
        }
        out.push_str(new);
        return out;
    }
    s.replace(old, new)
}

/// Python's `s.split(sep)[1]` when `sep` occurs: the text after the first `sep` and before the
/// second one (or the end). `None` when `sep` does not occur.
pub fn second_field<'a>(s: &'a str, sep: &str) -> Option<&'a str> {
    let (_, rest) = s.split_once(sep)?;
    Some(rest.split_once(sep).map_or(rest, |(field, _)| field))
}

/// Python's `s.split(sep)[0]`: the text before the first `sep`, or all of `s`.
pub fn first_field<'a>(s: &'a str, sep: &str) -> &'a str {
    s.split_once(sep).map_or(s, |(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_table_matches_fast_path() {
        for ch in ['\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{1f}', ' ', '\u{85}', '\u{3000}'] {
            assert!(is_space(ch), "{ch:?}");
        }
        for ch in ['a', '\u{8}', '\u{e}', '\u{1b}', '!', '\u{84}', '\u{180e}', '\u{200b}', '\u{feff}'] {
            assert!(!is_space(ch), "{ch:?}");
        }
        assert!(PY_WHITESPACE.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn digits_follow_python() {
        assert_eq!(digit_value('7'), Some(7));
        assert_eq!(digit_value('\u{663}'), Some(3), "ARABIC-INDIC DIGIT THREE");
        assert_eq!(digit_value('\u{1fbf9}'), Some(9), "SEGMENTED DIGIT NINE");
        assert_eq!(digit_value('\u{b2}'), None, "superscript two is not Nd");
        assert_eq!(digit_value('a'), None);
        assert_eq!(digit_value('\u{2f}'), None);
        let re = regex::Regex::new(&format!("^{}+$", digit_class())).unwrap();
        assert!(re.is_match("0\u{660}\u{1d7ff}"));
        assert!(!re.is_match("\u{b2}"));
        let re = regex::Regex::new(&format!("^{}+$", space_class())).unwrap();
        assert!(re.is_match(" \u{1c}\u{3000}"));
        assert!(!re.is_match("\u{200b}"));
    }

    #[test]
    fn strip_uses_python_whitespace() {
        assert_eq!(strip("\u{1c} x \u{2029}"), "x");
        assert_eq!(strip("\u{200b}x"), "\u{200b}x");
        assert_eq!(strip(""), "");
    }

    #[test]
    fn splitlines_matches_python() {
        let text = "a\x1cb\x1dc\x1ed\u{85}e\u{2028}f\u{2029}g\x0bh\x0ci\rj\r\nk";
        let lines: Vec<_> = splitlines(text).collect();
        assert_eq!(lines, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]);
        assert_eq!(splitlines("a\n").collect::<Vec<_>>(), ["a"]);
        assert_eq!(splitlines("a\n\n").collect::<Vec<_>>(), ["a", ""]);
        assert_eq!(splitlines("").count(), 0);
        assert_eq!(splitlines("\r\r\n\n").collect::<Vec<_>>(), ["", "", ""]);
        assert_eq!(splitlines("\x1f").collect::<Vec<_>>(), ["\x1f"]);
        assert_eq!(splitlines_keepends("a\r\nb\rc").collect::<Vec<_>>(), ["a\r\n", "b\r", "c"]);
    }

    #[test]
    fn replace_and_count_match_python() {
        assert_eq!(replace("aaa", "aa", "b"), "ba");
        assert_eq!(replace("ab", "", "-"), "-a-b-");
        assert_eq!(count("aaaa", "aa"), 2);
        assert_eq!(count("ab", ""), 3);
    }

    #[test]
    fn fields_match_python_split() {
        assert_eq!(second_field("x<a>y<a>z", "<a>"), Some("y"));
        assert_eq!(second_field("x<a>y", "<a>"), Some("y"));
        assert_eq!(second_field("xy", "<a>"), None);
        assert_eq!(first_field("y</a>z", "</a>"), "y");
        assert_eq!(first_field("yz", "</a>"), "yz");
    }
}
