//! A minimal TensorBoard event-file writer for scalar summaries.
//!
//! The file format is TensorFlow's TFRecord framing around serialized `tensorflow.Event`
//! protocol buffers. The few messages needed here are hand-encoded, so no protobuf crate is
//! required:
//!
//! ```text
//! Event      { wall_time: double = 1; step: int64 = 2; file_version: string = 3; summary: Summary = 5;
//!              session_log: SessionLog = 7 }
//! Summary    { repeated Value value = 1 }
//! SessionLog { status: enum = 1 }   (START = 1)
//! Value   { tag: string = 1; simple_value: float = 2 }
//! ```
//!
//! Each record is framed as: `u64` little-endian payload length, `u32` LE masked CRC-32C of
//! those 8 length bytes, the payload, `u32` LE masked CRC-32C of the payload.
//!
//! Files are named `events.out.tfevents.<unix_secs>.<hostname>.<pid>.<n>` so that
//! TensorBoard (which looks for `tfevents` in the file name) picks them up from the log
//! directory. The first record is the `brain.Event:2` file-version event.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file-version string TensorBoard expects in the first record of an event file.
pub const FILE_VERSION: &str = "brain.Event:2";

/// Reflected CRC-32C (Castagnoli) polynomial.
const CRC32C_POLY: u32 = 0x82F6_3B78;

/// Byte-wise lookup table for CRC-32C, built at compile time.
const CRC32C_TABLE: [u32; 256] = build_crc32c_table();

const fn build_crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ CRC32C_POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC-32C (Castagnoli) checksum of `data`, as used by TFRecord.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The "masked" CRC-32C that TFRecord stores: `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Frames `payload` as one TFRecord (length, masked CRC of length, payload, masked CRC of payload).
pub fn tfrecord_frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    out
}

/// Serialized `tensorflow.Event` with a `SessionLog` of status `START` at `step`.
fn encode_session_start_event(wall_time: f64, step: i64) -> Vec<u8> {
    let mut ev = Vec::with_capacity(24);
    put_f64(&mut ev, 1, wall_time);
    put_i64(&mut ev, 2, step);
    // Event.session_log (field 7) = SessionLog { status (field 1) = START (1) }.
    put_bytes(&mut ev, 7, &[0x08, 0x01]);
    ev
}

// Protobuf wire-format helpers.

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn put_f64(buf: &mut Vec<u8>, field: u32, v: f64) {
    put_key(buf, field, WIRE_FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_f32(buf: &mut Vec<u8>, field: u32, v: f32) {
    put_key(buf, field, WIRE_FIXED32);
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(buf: &mut Vec<u8>, field: u32, v: i64) {
    put_key(buf, field, WIRE_VARINT);
    // int64 uses plain two's complement varints (negative values take 10 bytes).
    put_varint(buf, v as u64);
}

/// Serialized `tensorflow.Event` carrying only the file version.
fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut ev = Vec::with_capacity(32);
    put_f64(&mut ev, 1, wall_time);
    put_i64(&mut ev, 2, 0);
    put_bytes(&mut ev, 3, FILE_VERSION.as_bytes());
    ev
}

/// Serialized `tensorflow.Event` with one `Summary` holding one `simple_value` per scalar.
fn encode_scalars_event(wall_time: f64, step: i64, scalars: &[(&str, f64)]) -> Vec<u8> {
    let mut summary = Vec::new();
    let mut value = Vec::new();
    for &(tag, v) in scalars {
        value.clear();
        put_bytes(&mut value, 1, tag.as_bytes());
        // TensorBoard stores simple_value as float32; NaN and infinities are written as-is.
        put_f32(&mut value, 2, v as f32);
        put_bytes(&mut summary, 1, &value);
    }
    let mut ev = Vec::with_capacity(summary.len() + 24);
    put_f64(&mut ev, 1, wall_time);
    put_i64(&mut ev, 2, step);
    put_bytes(&mut ev, 5, &summary);
    ev
}

// ---------------------------------------------------------------------------------------------

/// Per-process counter that keeps file names unique when several writers start in one second.
static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn now_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Host name for the event-file name, without any external crate.
fn hostname() -> String {
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "localhost".to_string());
    raw.trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect()
}

/// Writes scalar summaries to a TensorBoard event file.
///
/// Writes are buffered; call [`EventWriter::flush`] to make them visible to a running
/// TensorBoard. Dropping the writer flushes on a best-effort basis (errors are ignored).
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file inside it, and writes the
    /// `brain.Event:2` file-version record.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let wall_time = now_secs_f64();
        // TensorBoard reads a directory's files in name order: a file made within the same
        // second as an earlier one (a quick restart) takes a later second, so that its restart
        // marker comes after what it supersedes.
        let newest = std::fs::read_dir(dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name();
                name.to_str()?.strip_prefix("events.out.tfevents.")?.split('.').next()?.parse::<u64>().ok()
            })
            .max();
        let secs = newest.map_or(wall_time as u64, |n| (wall_time as u64).max(n + 1));
        let host = hostname();
        let pid = std::process::id();
        loop {
            let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{n}"));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    let mut w = Self { path, out: BufWriter::new(file) };
                    w.write_record(&encode_file_version_event(wall_time))?;
                    return Ok(w);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Path of the event file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one scalar at `step`, stamped with the current wall time.
    pub fn add_scalar(&mut self, tag: &str, step: i64, value: f64) -> io::Result<()> {
        self.add_scalars_at(step, now_secs_f64(), &[(tag, value)])
    }

    /// Adds one scalar at `step` with an explicit wall time (seconds since the Unix epoch).
    pub fn add_scalar_at(&mut self, tag: &str, step: i64, wall_time: f64, value: f64) -> io::Result<()> {
        self.add_scalars_at(step, wall_time, &[(tag, value)])
    }

    /// Adds several scalars at `step` in a single event, stamped with the current wall time.
    pub fn add_scalars(&mut self, step: i64, scalars: &[(&str, f64)]) -> io::Result<()> {
        self.add_scalars_at(step, now_secs_f64(), scalars)
    }

    /// Adds several scalars at `step` in a single event with an explicit wall time.
    ///
    /// Values are stored as `f32` (TensorBoard's `simple_value`); non-finite values are written
    /// unchanged. An empty `scalars` slice writes nothing.
    pub fn add_scalars_at(&mut self, step: i64, wall_time: f64, scalars: &[(&str, f64)]) -> io::Result<()> {
        if scalars.is_empty() {
            return Ok(());
        }
        self.write_record(&encode_scalars_event(wall_time, step, scalars))
    }

    /// Marks a restart at `step` (a `SessionLog` `START` event): TensorBoard then discards the
    /// values logged at `step` and later by the interrupted run, which a resumed run logs
    /// again.
    pub fn session_start(&mut self, step: i64) -> io::Result<()> {
        self.write_record(&encode_session_start_event(now_secs_f64(), step))
    }

    /// Flushes buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn write_record(&mut self, payload: &[u8]) -> io::Result<()> {
        self.out.write_all(&tfrecord_frame(payload))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI) test vector: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    #[allow(clippy::manual_rotate)] // checks against the formula as TensorFlow writes it
    fn masked_crc_formula() {
        let crc = crc32c(b"abc");
        assert_eq!(masked_crc32c(b"abc"), ((crc >> 15) | (crc << 17)).wrapping_add(0xa282ead8));
    }

    #[test]
    fn varint_encoding() {
        let enc = |v: u64| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        let mut b = Vec::new();
        put_i64(&mut b, 2, -1);
        assert_eq!(b, [0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    }

    #[test]
    fn scalar_event_bytes() {
        let ev = encode_scalars_event(1.5, 3, &[("a", 2.0)]);
        let mut expect = vec![0x09];
        expect.extend_from_slice(&1.5f64.to_le_bytes());
        expect.extend_from_slice(&[0x10, 0x03, 0x2A, 0x0A, 0x0A, 0x08, 0x0A, 0x01, b'a', 0x15]);
        expect.extend_from_slice(&2.0f32.to_le_bytes());
        assert_eq!(ev, expect);
    }

    /// Splits a TFRecord stream, checking both CRCs of every record.
    fn read_records(mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let len_bytes: [u8; 8] = data[..8].try_into().unwrap();
            let len = u64::from_le_bytes(len_bytes) as usize;
            assert_eq!(u32::from_le_bytes(data[8..12].try_into().unwrap()), masked_crc32c(&len_bytes));
            let payload = &data[12..12 + len];
            let crc = u32::from_le_bytes(data[12 + len..16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(payload));
            out.push(payload.to_vec());
            data = &data[16 + len..];
        }
        out
    }

    #[test]
    fn writes_framed_records() {
        let dir = std::env::temp_dir().join(format!("tb-unit-{}", std::process::id()));
        let path;
        {
            let mut w = EventWriter::create(&dir.join("nested")).unwrap();
            path = w.path().to_path_buf();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            assert!(name.starts_with("events.out.tfevents."), "{name}");
            w.add_scalar_at("loss", 7, 10.0, 0.25).unwrap();
            w.add_scalars(8, &[("a", 1.0), ("b", f64::NAN)]).unwrap();
            w.add_scalars(9, &[]).unwrap();
        } // dropped: flushed
        let data = std::fs::read(&path).unwrap();
        let recs = read_records(&data);
        assert_eq!(recs.len(), 3);
        assert!(recs[0].ends_with(FILE_VERSION.as_bytes()));
        assert_eq!(recs[1], encode_scalars_event(10.0, 7, &[("loss", 0.25)]));
        // Two writers in the same directory get distinct files.
        let a = EventWriter::create(&dir).unwrap();
        let b = EventWriter::create(&dir).unwrap();
        assert_ne!(a.path(), b.path());
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
