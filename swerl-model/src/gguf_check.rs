//! A bounded walk over a GGUF header before candle reads it: every count and length must fit in
//! the file, so a corrupted or hostile header is an error instead of a huge allocation (which
//! aborts the process) or a panic.

use std::io::{BufReader, Read};

/// Checks the header (metadata and tensor table) of a GGUF file of `len` bytes read from
/// `reader`; the message says what is wrong.
pub(crate) fn check_header(reader: impl Read, len: u64) -> std::result::Result<(), String> {
    let mut r = Bounded { inner: BufReader::new(reader), left: len };
    if r.bytes::<4>()? != *b"GGUF" {
        return Err("not a GGUF file (bad magic)".into());
    }
    let version = r.u32()?;
    let wide = match version {
        1 => false,
        2 | 3 => true,
        v => return Err(format!("unsupported GGUF version {v}")),
    };
    let tensors = r.count(wide, 8)?;
    let kvs = r.count(wide, 8)?;
    for _ in 0..kvs {
        r.string(wide)?;
        let ty = r.u32()?;
        r.value(ty, wide, 0)?;
    }
    for _ in 0..tensors {
        r.string(wide)?;
        let dims = r.u32()?;
        if dims > 8 {
            return Err(format!("a tensor with {dims} dimensions"));
        }
        // Every quantized format stores at least 2 bits a weight: more elements than 4 per
        // byte of the file cannot be there (and would overflow or exhaust memory when read).
        let mut elements: u64 = 1;
        for _ in 0..dims {
            let d = r.count(wide, 0)?;
            elements = elements.checked_mul(d).filter(|&n| n <= len.saturating_mul(4)).ok_or_else(|| {
                "a tensor's dimensions describe more weights than the file can hold".to_owned()
            })?;
        }
        r.u32()?; // type
        r.u64()?; // offset
    }
    Ok(())
}

struct Bounded<R> {
    inner: BufReader<R>,
    left: u64,
}

impl<R: Read> Bounded<R> {
    fn bytes<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|_| "the header ends early".to_owned())?;
        self.left = self.left.saturating_sub(N as u64);
        Ok(b)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A count or length whose items take at least `min_item` bytes each (0: not checked)
    /// and must fit in what is left of the file.
    fn count(&mut self, wide: bool, min_item: u64) -> std::result::Result<u64, String> {
        let n = if wide { self.u64()? } else { u64::from(self.u32()?) };
        if n.saturating_mul(min_item) > self.left {
            return Err(format!("a count of {n} does not fit in the file"));
        }
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> std::result::Result<(), String> {
        if n > self.left {
            return Err(format!("a length of {n} bytes does not fit in the file"));
        }
        let copied =
            std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink()).map_err(|e| e.to_string())?;
        if copied != n {
            return Err("the header ends early".into());
        }
        self.left -= n;
        Ok(())
    }

    fn string(&mut self, wide: bool) -> std::result::Result<(), String> {
        let n = self.count(wide, 1)?;
        self.skip(n)
    }

    fn value(&mut self, ty: u32, wide: bool, depth: u32) -> std::result::Result<(), String> {
        let size = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => return self.string(wide),
            9 => {
                if depth > 4 {
                    return Err("arrays nested too deeply".into());
                }
                let item = self.u32()?;
                let n = self.count(wide, 1)?;
                return match item {
                    8 | 9 => (0..n).try_for_each(|_| self.value(item, wide, depth + 1)),
                    _ => {
                        let size = match item {
                            0 | 1 | 7 => 1,
                            2 | 3 => 2,
                            4..=6 => 4,
                            10..=12 => 8,
                            t => return Err(format!("unknown value type {t}")),
                        };
                        self.skip(n.saturating_mul(size))
                    }
                };
            }
            t => return Err(format!("unknown value type {t}")),
        };
        self.skip(size)
    }
}
