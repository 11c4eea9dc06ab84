//! `log.file`: a log file rotated by size. When a line would take the file past
//! `log.file_max_size`, `FILE.N-1` becomes `FILE.N` … `FILE` becomes `FILE.1` (the oldest beyond
//! `log.file_keep` is removed) and a new `FILE` is started; with `file_keep: 0` the file is
//! emptied instead. A line is never split between two files. New files are created with mode
//! 0600.
//!
//! Written here rather than taken from a crate: `rolling-file` has had no release since 2022,
//! and `file-rotate` brings compression (flate2) and date suffixes we do not use; the rotation
//! itself is a handful of renames.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The file, shared by every writer the logging layer makes.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: u16,
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// `FILE.n`.
fn numbered(path: &Path, n: u16) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl RotatingFile {
    /// Opens (appends to) `path`; its directory must exist.
    pub fn open(path: &Path, max_size: u64, keep: u16) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Inner {
                path: path.to_path_buf(),
                file: Some(file),
                size,
                max_size,
                keep,
            })),
        })
    }

    /// The rotated files' paths, `FILE.1` … `FILE.keep`.
    pub fn rotated_paths(path: &Path, keep: u16) -> Vec<PathBuf> {
        (1..=keep).map(|n| numbered(path, n)).collect()
    }
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            self.file = Some(File::create(&self.path)?);
        } else {
            let _ = std::fs::remove_file(numbered(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(&self.path, 1))?;
            self.file = Some(open_append(&self.path)?);
        }
        self.size = 0;
        Ok(())
    }

    fn write_line(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_size {
            self.rotate()?;
        }
        if self.file.is_none() {
            // A rotation that failed halfway: start again on the file as it is.
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(file) => file.write_all(buf)?,
            None => return Err(io::Error::other("log file not open")),
        }
        self.size = self.size.saturating_add(len);
        Ok(buf.len())
    }
}

/// What one event writes through: the file, locked for the event's line.
pub struct Writer<'a>(MutexGuard<'a, Inner>);

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.0.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = Writer<'a>;

    fn make_writer(&'a self) -> Writer<'a> {
        Writer(self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dirsync.log");
        let file = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..50 {
            let mut w = file.make_writer();
            w.write_all(format!("line {i:04} of the log\n").as_bytes())
                .unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        for p in RotatingFile::rotated_paths(&path, 2) {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.len() <= 100 && text.ends_with('\n'), "{text:?}");
        }
        assert!(!numbered(&path, 3).exists());
        // The newest lines are in FILE, the ones before in FILE.1.
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("line 0049")
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn keep_zero_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dirsync.log");
        let file = RotatingFile::open(&path, 50, 0).unwrap();
        for _ in 0..10 {
            file.make_writer().write_all(b"0123456789abcdef\n").unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 50);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
