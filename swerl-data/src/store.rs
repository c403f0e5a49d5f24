//! Sorted JSONL files of [`Thread`]s and their streaming k-way merge.
//!
//! Every thread file is sorted by `(repo, number)`, so files from different hours or shards merge
//! in one pass with memory proportional to the number of inputs, never to their size. Files are
//! written to a temporary name and renamed, so a file that exists is complete (resumable runs
//! rely on this).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::thread::Thread;

/// Most files merged at once; more inputs are merged in rounds through temporary files.
pub const MERGE_FAN_IN: usize = 128;

/// Writes `value` as JSON to `path` atomically (temporary file + rename).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = tmp_path(path);
    let mut w = BufWriter::new(fs_err::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
    serde_json::to_writer_pretty(&mut w, value).map_err(|e| Error::Json { path: tmp.clone(), source: e })?;
    w.write_all(b"\n").map_err(|e| Error::io(&tmp, e))?;
    w.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
    fs_err::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The temporary name used while writing `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes threads (already in key order) to `path` as JSONL, atomically.
pub fn write_threads<'a>(path: &Path, threads: impl IntoIterator<Item = &'a Thread>) -> Result<u64> {
    let tmp = tmp_path(path);
    let mut w = JsonlWriter::create(&tmp)?;
    for t in threads {
        w.write(t)?;
    }
    let n = w.finish()?;
    fs_err::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(n)
}

/// A buffered JSONL writer that names its file in errors.
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<fs_err::File>,
    count: u64,
}

impl JsonlWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let f = fs_err::File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), out: BufWriter::with_capacity(1 << 20, f), count: 0 })
    }

    /// Writes one record and a newline.
    pub fn write<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.out, value)
            .map_err(|e| Error::Json { path: self.path.clone(), source: e })?;
        self.out.write_all(b"\n").map_err(|e| Error::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }

    /// Flushes; returns the number of records written.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        self.out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(&path, e))?;
        Ok(self.count)
    }
}

/// Reads a thread JSONL file one record at a time.
pub struct ThreadReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<fs_err::File>>,
    line: u64,
}

impl ThreadReader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let f = fs_err::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), lines: BufReader::with_capacity(1 << 20, f).lines(), line: 0 })
    }
}

impl Iterator for ThreadReader {
    type Item = Result<Thread>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next()? {
                Ok(l) => l,
                Err(e) => return Some(Err(Error::io(&self.path, e))),
            };
            self.line += 1;
            if line.trim().is_empty() {
                continue;
            }
            return Some(serde_json::from_str(&line).map_err(|e| Error::InvalidRecord {
                path: self.path.clone(),
                line: self.line,
                message: e.to_string(),
            }));
        }
    }
}

struct Head {
    thread: Thread,
    source: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.thread.cmp_key(&o.thread).then(self.source.cmp(&o.source))
    }
}

/// Streams the merge of sorted thread files, combining threads with equal keys.
pub struct MergedThreads {
    readers: Vec<ThreadReader>,
    heap: BinaryHeap<Reverse<Head>>,
    primed: bool,
}

impl MergedThreads {
    /// Opens every input.
    pub fn open(inputs: &[PathBuf]) -> Result<Self> {
        let readers = inputs.iter().map(|p| ThreadReader::open(p)).collect::<Result<Vec<_>>>()?;
        Ok(Self { readers, heap: BinaryHeap::new(), primed: false })
    }

    fn pull(&mut self, source: usize) -> Result<()> {
        if let Some(t) = self.readers[source].next() {
            self.heap.push(Reverse(Head { thread: t?, source }));
        }
        Ok(())
    }
}

impl Iterator for MergedThreads {
    type Item = Result<Thread>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.primed {
            self.primed = true;
            for i in 0..self.readers.len() {
                if let Err(e) = self.pull(i) {
                    return Some(Err(e));
                }
            }
        }
        let Reverse(Head { mut thread, source }) = self.heap.pop()?;
        if let Err(e) = self.pull(source) {
            return Some(Err(e));
        }
        while let Some(Reverse(h)) = self.heap.peek() {
            if h.thread.cmp_key(&thread) != std::cmp::Ordering::Equal {
                break;
            }
            let Some(Reverse(Head { thread: t, source })) = self.heap.pop() else {
                break;
            };
            thread.absorb(t);
            if let Err(e) = self.pull(source) {
                return Some(Err(e));
            }
        }
        Some(Ok(thread))
    }
}

/// Merges sorted thread files into one sorted file at `out`, in rounds of at most
/// [`MERGE_FAN_IN`] inputs (intermediate files live beside `out` and are removed).
pub fn merge_thread_files(inputs: &[PathBuf], out: &Path) -> Result<u64> {
    let mut round: Vec<PathBuf> = inputs.to_vec();
    let mut temps: Vec<PathBuf> = Vec::new();
    let mut level = 0;
    while round.len() > MERGE_FAN_IN {
        let mut next = Vec::new();
        for (i, chunk) in round.chunks(MERGE_FAN_IN).enumerate() {
            let p = out.with_file_name(format!(".merge-{level}-{i}.jsonl"));
            write_merged(chunk, &p)?;
            temps.push(p.clone());
            next.push(p);
        }
        round = next;
        level += 1;
    }
    let n = write_merged(&round, out)?;
    for t in temps {
        fs_err::remove_file(&t).map_err(|e| Error::io(&t, e))?;
    }
    Ok(n)
}

fn write_merged(inputs: &[PathBuf], out: &Path) -> Result<u64> {
    let tmp = tmp_path(out);
    let mut w = JsonlWriter::create(&tmp)?;
    for t in MergedThreads::open(inputs)? {
        w.write(&t?)?;
    }
    let n = w.finish()?;
    fs_err::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    Ok(n)
}

/// Groups a key-sorted stream of threads by repository.
pub struct ByRepo<I: Iterator<Item = Result<Thread>>> {
    inner: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = Result<Thread>>> ByRepo<I> {
    /// Wraps a sorted stream.
    pub fn new(inner: I) -> Self {
        Self { inner: inner.peekable() }
    }
}

impl<I: Iterator<Item = Result<Thread>>> Iterator for ByRepo<I> {
    type Item = Result<(String, BTreeMap<u64, Thread>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.inner.next()? {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let repo = first.repo.clone();
        let mut group = BTreeMap::new();
        group.insert(first.number, first);
        while let Some(Ok(t)) = self.inner.peek() {
            if t.repo != repo {
                break;
            }
            let Some(Ok(t)) = self.inner.next() else {
                break;
            };
            match group.get_mut(&t.number) {
                Some(g) => g.absorb(t),
                None => {
                    group.insert(t.number, t);
                }
            }
        }
        Some(Ok((repo, group)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_way_merge_combines_equal_keys_across_rounds() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut inputs = Vec::new();
        // More files than the fan-in, so the merge takes two rounds.
        for f in 0..(MERGE_FAN_IN + 5) {
            let mut ts = Vec::new();
            for n in [1u64, 2, (f % 7) as u64 + 3] {
                let mut t = Thread::new(if n % 2 == 0 { "a/b" } else { "c/d" }, n);
                t.events = 1;
                ts.push(t);
            }
            ts.sort_by(|a, b| a.cmp_key(b));
            ts.dedup_by(|a, b| a.cmp_key(b).is_eq());
            let p = dir.path().join(format!("{f}.jsonl"));
            write_threads(&p, &ts)?;
            inputs.push(p);
        }
        let out = dir.path().join("merged.jsonl");
        merge_thread_files(&inputs, &out)?;
        let merged: Vec<Thread> = ThreadReader::open(&out)?.collect::<Result<_>>()?;
        let keys: Vec<_> = merged.iter().map(|t| t.key()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
        let total: u64 = merged.iter().map(|t| t.events).sum();
        let expected: u64 =
            (0..(MERGE_FAN_IN + 5)).map(|f| if (f % 7) + 3 <= 2 { 2 } else { 3 }).sum::<usize>() as u64;
        assert_eq!(total, expected);
        assert_eq!(std::fs::read_dir(dir.path())?.count(), MERGE_FAN_IN + 6);
        let groups: Vec<_> = ByRepo::new(MergedThreads::open(&[out])?).collect::<Result<_>>()?;
        assert_eq!(groups.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["a/b", "c/d"]);
        Ok(())
    }
}
