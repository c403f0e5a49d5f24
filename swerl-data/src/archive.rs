//! GH Archive hour files: finding them, selecting a shard or date range, and streaming one file
//! into thread fragments.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{Parsed, parse_line};
use crate::stats::ScanStats;
use crate::thread::{Thread, ThreadKey};

/// The hour a GH Archive file covers, parsed from `YYYY-MM-DD-H.json.gz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hour {
    /// Year.
    pub year: u32,
    /// Month 1-12.
    pub month: u32,
    /// Day 1-31.
    pub day: u32,
    /// Hour 0-23.
    pub hour: u32,
}

impl Hour {
    /// Parses `YYYY-MM-DD-H` (hour not zero-padded, but accepted padded) or `YYYY-MM-DD`
    /// (hour 0), optionally followed by `.json.gz` / `.json`.
    pub fn parse(text: &str) -> Option<Hour> {
        let stem = text.strip_suffix(".json.gz").or_else(|| text.strip_suffix(".json")).unwrap_or(text);
        let mut it = stem.split('-');
        let year = it.next()?.parse().ok().filter(|y: &u32| (1000..=9999).contains(y))?;
        let month = it.next()?.parse().ok().filter(|m| (1..=12).contains(m))?;
        let day = it.next()?.parse().ok().filter(|d| (1..=31).contains(d))?;
        let hour = match it.next() {
            Some(h) => h.parse().ok().filter(|h| *h < 24)?,
            None => 0,
        };
        it.next().is_none().then_some(Hour { year, month, day, hour })
    }

    /// Files before 2015 use the Timeline API schema.
    pub fn is_legacy(&self) -> bool {
        self.year < 2015
    }
}

/// An inclusive range of hours; `to` given as a day covers the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRange {
    /// First hour included.
    pub from: Option<Hour>,
    /// Last hour included.
    pub to: Option<Hour>,
}

impl HourRange {
    /// Parses `FROM..TO` where each side is `YYYY-MM-DD[-H]` and may be empty.
    pub fn parse(spec: &str) -> Result<HourRange> {
        let bad = |m: &str| Error::InvalidSpec { what: "date range", value: spec.into(), message: m.into() };
        let (a, b) = spec.split_once("..").ok_or_else(|| bad("expected FROM..TO"))?;
        let side = |t: &str, end: bool| -> Result<Option<Hour>> {
            if t.is_empty() {
                return Ok(None);
            }
            let mut h = Hour::parse(t).ok_or_else(|| bad("dates are YYYY-MM-DD or YYYY-MM-DD-H"))?;
            if end && t.split('-').count() == 3 {
                h.hour = 23;
            }
            Ok(Some(h))
        };
        let range = HourRange { from: side(a, false)?, to: side(b, true)? };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from > to
        {
            return Err(bad("FROM is after TO: the range is empty"));
        }
        Ok(range)
    }

    /// Whether `h` lies in the range.
    pub fn contains(&self, h: Hour) -> bool {
        self.from.is_none_or(|f| h >= f) && self.to.is_none_or(|t| h <= t)
    }
}

/// A `i/n` slice of a work list (files for scanning, repositories for instance building).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based index of this worker.
    pub index: u32,
    /// Number of workers.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Parses `i/n` with `0 <= i < n`.
    pub fn parse(spec: &str) -> Result<Shard> {
        let bad = |m: &str| Error::InvalidSpec { what: "shard", value: spec.into(), message: m.into() };
        let (i, n) = spec.split_once('/').ok_or_else(|| bad("expected i/n, e.g. 0/8"))?;
        let index: u32 = i.trim().parse().map_err(|_| bad("i is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| bad("n is not a number"))?;
        if count == 0 || index >= count {
            return Err(bad("need 0 <= i < n"));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard owns item `position` of a sorted list.
    pub fn owns_position(&self, position: usize) -> bool {
        position % self.count as usize == self.index as usize
    }

    /// Whether this shard owns a repository (stable FNV-1a hash of the lower-cased name).
    pub fn owns_repo(&self, repo: &str) -> bool {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in repo.bytes() {
            h ^= u64::from(b.to_ascii_lowercase());
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether this is the trivial `0/1` shard.
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Lists the archive files named by `inputs` (files, or directories searched recursively for
/// `*.json.gz` or `*.json`), keeps those in `range`, and sorts them by hour then path. Files whose name is
/// not an hour are kept (and ordered after dated ones) unless a range is given.
///
/// Symbolic links are followed, but each directory is visited once (a link loop ends) and each
/// file is listed once, however many paths lead to it.
pub fn discover(inputs: &[PathBuf], range: Option<&HourRange>) -> Result<Vec<PathBuf>> {
    discover_excluding(inputs, range, &[])
}

/// [`discover`], skipping the directories `exclude` (canonical paths; a run's own output).
pub fn discover_excluding(
    inputs: &[PathBuf],
    range: Option<&HourRange>,
    exclude: &[PathBuf],
) -> Result<Vec<PathBuf>> {
    let mut walk = Walk { exclude, dirs: HashSet::new(), files: HashSet::new(), found: Vec::new() };
    for input in inputs {
        let meta = fs_err::metadata(input).map_err(|e| Error::io(input, e))?;
        if meta.is_dir() {
            walk.dir(input)?;
        } else {
            walk.file(input.clone());
        }
    }
    let mut keyed: Vec<(Option<Hour>, PathBuf)> = walk
        .found
        .into_iter()
        .map(|p| (p.file_name().and_then(|n| n.to_str()).and_then(Hour::parse), p))
        .filter(|(h, _)| match (range, h) {
            (None, _) => true,
            (Some(r), Some(h)) => r.contains(*h),
            (Some(_), None) => false,
        })
        .collect();
    keyed.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    keyed.dedup_by(|a, b| a.1 == b.1);
    Ok(keyed.into_iter().map(|(_, p)| p).collect())
}

/// A directory walk that visits each directory and lists each file once (by canonical path).
struct Walk<'a> {
    exclude: &'a [PathBuf],
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    found: Vec<PathBuf>,
}

impl Walk<'_> {
    fn file(&mut self, path: PathBuf) {
        // A dangling link has no canonical path: keep it, opening it names the error.
        let canonical = fs_err::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if self.files.insert(canonical) {
            self.found.push(path);
        }
    }

    fn dir(&mut self, dir: &Path) -> Result<()> {
        let canonical = fs_err::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        if self.exclude.contains(&canonical) || !self.dirs.insert(canonical) {
            return Ok(());
        }
        let mut entries: Vec<_> = fs_err::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                self.dir(&p)?;
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json.gz") || n.ends_with(".json"))
            {
                self.file(p);
            }
        }
        Ok(())
    }
}

/// Options of the scanning stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScanConfig {
    /// Fully validate the JSON of event types that are not parsed (slower). By default those
    /// lines are only checked to be one complete object.
    pub validate_all: bool,
    /// Longest line read, in decompressed bytes; a longer line is a malformed line (skipped
    /// without being held in memory).
    pub max_line_bytes: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self { validate_all: false, max_line_bytes: 16 << 20 }
    }
}

/// The result of scanning one file: its thread fragments (sorted by key) and statistics.
#[derive(Debug, Default)]
pub struct FileScan {
    /// Thread fragments by key.
    pub threads: BTreeMap<ThreadKey, Thread>,
    /// Counters.
    pub stats: ScanStats,
}

/// Reports bytes pulled from the underlying reader.
struct Counting<'a, R> {
    inner: R,
    on_bytes: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

/// Streams one hour file (multi-member gzip of JSON lines, or plain JSON lines when the name
/// ends in `.json`) into thread fragments. Malformed
/// lines and a truncated or corrupt gzip stream are recorded in the returned statistics with
/// the file and line; only failing to open the file is an error. `on_bytes` is called with the
/// number of compressed bytes consumed as reading proceeds (for progress reporting).
pub fn scan_file(path: &Path, config: &ScanConfig, on_bytes: &dyn Fn(u64)) -> Result<FileScan> {
    let mut out = FileScan::default();
    let stats = &mut out.stats;
    stats.files = 1;
    if path.file_name().and_then(|n| n.to_str()).and_then(Hour::parse).is_some_and(|h| h.is_legacy()) {
        stats.files = 0;
        stats.legacy_files = 1;
        return Ok(out);
    }
    let file = fs_err::File::open(path).map_err(|e| Error::io(path, e))?;
    stats.compressed_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let counting = Counting { inner: file, on_bytes };
    // Hour files are gzip; an already decompressed `.json` file is read as it is.
    let plain = path.extension().is_some_and(|e| e == "json");
    let decoder: Box<dyn Read + '_> = if plain {
        Box::new(counting)
    } else {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 17, counting)))
    };
    let mut reader = BufReader::with_capacity(1 << 18, decoder);
    let mut line = Vec::with_capacity(1 << 16);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let length = match read_line_bounded(&mut reader, &mut line, config.max_line_bytes) {
            Ok(Line::End) => break,
            Ok(Line::Read) => None,
            Ok(Line::TooLong(n)) => Some(n),
            Err(e) => {
                stats.truncated_files += 1;
                stats.problem(path.to_path_buf(), line_no + 1, format!("gzip stream ends early: {e}"));
                break;
            }
        };
        line_no += 1;
        if let Some(n) = length {
            stats.lines += 1;
            stats.malformed_lines += 1;
            let max = config.max_line_bytes;
            stats.problem(
                path.to_path_buf(),
                line_no,
                format!("line of {n} bytes, longer than {max}: skipped"),
            );
            continue;
        }
        let complete = line.last() == Some(&b'\n');
        let text = trim_line(&line);
        if text.is_empty() {
            continue;
        }
        stats.lines += 1;
        match parse_line(text, config.validate_all) {
            Ok(Parsed::Thread { kind, thread, trimmed }) => {
                stats.events += 1;
                bump(&mut stats.by_type, &kind);
                if trimmed {
                    stats.trimmed_pr_events += 1;
                }
                let thread = *thread;
                match out.threads.entry(thread.key()) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(thread);
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().absorb(thread),
                }
            }
            Ok(Parsed::Other { kind }) => {
                stats.events += 1;
                bump(&mut stats.by_type, &kind);
            }
            Ok(Parsed::Legacy) => stats.legacy_events += 1,
            Err(message) => {
                stats.malformed_lines += 1;
                let message =
                    if complete { message } else { format!("{message} (last line has no newline)") };
                stats.problem(path.to_path_buf(), line_no, message);
            }
        }
    }
    Ok(out)
}

/// What [`read_line_bounded`] read.
enum Line {
    /// End of input.
    End,
    /// A line (with its `\n` unless it is the last).
    Read,
    /// A line longer than the bound, of this many bytes, consumed but not kept.
    TooLong(u64),
}

/// `read_until(b'\n')` that keeps at most `max` bytes of a line in memory: a longer line is
/// consumed to its end and reported by its length.
fn read_line_bounded(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    let mut total = 0u64;
    let mut too_long = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let (n, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long && line.len() + n > max {
            too_long = true;
            line.clear();
            line.shrink_to(1 << 16);
        }
        if !too_long {
            line.extend_from_slice(&buf[..n]);
        }
        reader.consume(n);
        total += n as u64;
        if done {
            break;
        }
    }
    Ok(match (total, too_long) {
        (0, _) => Line::End,
        (n, true) => Line::TooLong(n),
        (_, false) => Line::Read,
    })
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else {
        map.insert(key.to_owned(), 1);
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names() {
        assert_eq!(
            Hour::parse("2021-07-21-6.json.gz"),
            Some(Hour { year: 2021, month: 7, day: 21, hour: 6 })
        );
        assert_eq!(Hour::parse("2015-01-01-23.json.gz").map(|h| h.hour), Some(23));
        assert_eq!(Hour::parse("2015-01-01-24.json.gz"), None);
        assert_eq!(Hour::parse("notes.json.gz"), None);
        assert!(Hour::parse("2014-12-31-23.json.gz").is_some_and(|h| h.is_legacy()));
    }

    #[test]
    fn lines_longer_than_the_bound_are_consumed_not_kept() {
        let text = format!("short\n{}\nlast", "x".repeat(100));
        let mut reader = BufReader::with_capacity(8, text.as_bytes());
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            line.clear();
            match read_line_bounded(&mut reader, &mut line, 10).expect("reads") {
                Line::End => break,
                Line::Read => got.push(String::from_utf8(line.clone()).expect("utf8")),
                Line::TooLong(n) => got.push(format!("<{n} bytes>")),
            }
            assert!(line.capacity() <= 1 << 16);
        }
        assert_eq!(got, ["short\n", "<101 bytes>", "last"]);
    }

    #[test]
    fn symlink_loops_end_and_files_are_listed_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let sub = dir.path().join("a");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("2021-07-21-6.json.gz"), b"").expect("write");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(".", sub.join("dot")).expect("link");
            std::os::unix::fs::symlink(dir.path(), sub.join("up")).expect("link");
        }
        let found =
            discover(&[dir.path().to_path_buf(), sub.join("2021-07-21-6.json.gz")], None).expect("walk");
        assert_eq!(found, [sub.join("2021-07-21-6.json.gz")]);
        let excluded =
            discover_excluding(&[dir.path().to_path_buf()], None, &[sub.canonicalize().expect("canon")])
                .expect("walk");
        assert!(excluded.is_empty());
    }

    #[test]
    fn ranges_and_shards() {
        let r = HourRange::parse("2021-07-21-7..2021-07-21").expect("range");
        assert!(!r.contains(Hour { year: 2021, month: 7, day: 21, hour: 6 }));
        assert!(r.contains(Hour { year: 2021, month: 7, day: 21, hour: 23 }));
        assert!(HourRange::parse("2021").is_err());
        let inverted = HourRange::parse("2021-07-22..2021-07-21").expect_err("inverted");
        assert!(inverted.to_string().contains("FROM is after TO"), "{inverted}");
        assert!(HourRange::parse("2021-07-21..2021-07-21").is_ok());
        assert_eq!(Shard::parse("1/4").ok().map(|s| s.index), Some(1));
        assert!(Shard::parse("4/4").is_err());
        assert!(Shard::parse("x").is_err());
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        for repo in ["a/b", "c/d", "E/F", "x/yy"] {
            assert_eq!(shards.iter().filter(|s| s.owns_repo(repo)).count(), 1);
        }
    }
}
