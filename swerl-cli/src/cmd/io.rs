//! Input and output files of the JSONL subcommands (`reward`, `logprobs`): `-` is stdin, an
//! output never overwrites its input, and a file output is written to a temporary file renamed
//! over the destination at the end, so that an interrupted run leaves the old file (or none),
//! never a half-written one.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Opens `path` for reading (`-`: stdin).
pub(crate) fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        Ok(Box::new(std::io::stdin().lock()))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 20, fs_err::File::open(path)?)))
    }
}

/// Where results go: stdout, or a file replaced atomically by [`Output::commit`].
pub(crate) struct Output {
    writer: BufWriter<Box<dyn Write>>,
    /// `(temporary file, destination)` for file outputs written through a rename.
    rename: Option<(PathBuf, PathBuf)>,
}

impl Output {
    /// Opens the output: `None` is stdout. Refuses an output that is the input file (same
    /// device and inode, whatever the spelling, stdin included).
    pub(crate) fn create(path: Option<&Path>, input: &Path) -> anyhow::Result<Output> {
        let Some(path) = path else {
            return Ok(Output { writer: BufWriter::new(Box::new(std::io::stdout().lock())), rename: None });
        };
        if let Ok(out_meta) = std::fs::metadata(path) {
            let in_meta =
                if input.as_os_str() == "-" { stdin_metadata() } else { std::fs::metadata(input).ok() };
            if in_meta.is_some_and(|m| same_file(&m, &out_meta)) {
                crate::cmd::usage!(
                    "the output {} is the input file {}: refusing to overwrite it",
                    path.display(),
                    input.display()
                );
            }
            // Devices and pipes (`/dev/null`, a FIFO) are written in place.
            if !out_meta.is_file() {
                let file = fs_err::OpenOptions::new().write(true).open(path)?;
                return Ok(Output { writer: BufWriter::new(Box::new(file)), rename: None });
            }
        }
        let tmp = temp_name(path);
        let file = fs_err::File::create(&tmp)?;
        Ok(Output {
            writer: BufWriter::with_capacity(1 << 20, Box::new(file)),
            rename: Some((tmp, path.to_path_buf())),
        })
    }

    /// The writer.
    pub(crate) fn writer(&mut self) -> &mut BufWriter<Box<dyn Write>> {
        &mut self.writer
    }

    /// Flushes and, for a file, renames the temporary file over the destination.
    pub(crate) fn commit(mut self) -> anyhow::Result<()> {
        self.writer.flush().context("writing the output")?;
        if let Some((tmp, dest)) = self.rename.take() {
            fs_err::rename(&tmp, &dest)?;
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Not committed (an error stopped the command): the destination is left as it was.
        if let Some((tmp, _)) = &self.rename {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `.NAME.PID.tmp` beside `path`.
fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn stdin_metadata() -> Option<std::fs::Metadata> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    std::fs::File::from(fd).metadata().ok()
}

#[cfg(not(unix))]
fn stdin_metadata() -> Option<std::fs::Metadata> {
    None
}

/// Splits a byte line into text, or says why it is not UTF-8 (with the byte offset).
pub(crate) fn utf8_line(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
}

/// Writes `bytes` to `path` through a temporary sibling renamed into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs_err::write(&tmp, bytes)?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}
