//! An append-only file of checksummed records: `[len: u32 LE][crc32(body): u32 LE][body]`.
//!
//! Used for the metadata log and every shard replica's write-ahead log. A record is written whole
//! or not at all from the reader's point of view. On open, a record whose header or checksum does
//! not hold is either a **torn tail** (no valid record follows it: an append cut short by a
//! crash, or a file extended with zeros) and is truncated with a warning, or **corruption** (a
//! valid record follows it: the damage is inside the log) and the open fails with an error that
//! names the file and the offset. Corruption is never silently shortened into a smaller log.
//! Records are never empty (every writer encodes at least a version byte), so a zero-filled tail
//! is never read as records.
//!
//! The log holds no file descriptor between appends: a node with 100,000 idle shard replicas must
//! not hold 100,000 open files. Opening a file costs microseconds next to the fsync that follows.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Largest record body accepted, on write and on read.
pub const MAX_RECORD_BYTES: usize = 128 << 20;
const HEADER: usize = 8;

/// Why an append failed, and whether the log may still be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Nothing reached the file (a record over the limit, a directory or the file that could not
    /// be created or opened): the log is exactly as before and may be used again.
    #[error("{0}")]
    Refused(Error),
    /// Writing or syncing the records failed. The file was cut back to its previous length on a
    /// best-effort basis, but what it and the disk hold is unknown (after a failed fsync the
    /// kernel may have dropped the dirty pages): whoever keeps state that follows the log must
    /// stop using it.
    #[error("{0}")]
    Failed(Error),
}

impl From<AppendError> for Error {
    fn from(e: AppendError) -> Error {
        match e {
            AppendError::Refused(e) | AppendError::Failed(e) => e,
        }
    }
}

#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    /// Bytes of valid records in the file.
    len: u64,
    /// Whether the file exists on disk (and its directory entry is durable).
    exists: bool,
}

/// What opening a log found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub records: usize,
    /// Bytes cut from the end because they did not form a valid record.
    pub truncated_bytes: u64,
}

/// The body length of the valid record starting at `pos`, if one does: a whole header, a body
/// of 1..=[`MAX_RECORD_BYTES`] bytes inside the file, and its checksum.
fn record_at(data: &[u8], pos: usize) -> Option<usize> {
    let header = data.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let body = data.get(pos + HEADER..(pos + HEADER).checked_add(len)?)?;
    (crc32fast::hash(body) == crc).then_some(len)
}

impl RecordLog {
    /// Opens the log at `path` (a missing file is an empty log; nothing is created until the first
    /// append), feeding each valid record to `on_record` in order. A torn or corrupt tail is
    /// truncated. An error from `on_record` aborts the open.
    pub fn open(
        path: &Path,
        mut on_record: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<(RecordLog, OpenReport)> {
        let mut report = OpenReport::default();
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((
                    RecordLog {
                        path: path.to_path_buf(),
                        len: 0,
                        exists: false,
                    },
                    report,
                ));
            }
            Err(e) => return Err(Error::io("open log", path, e)),
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| Error::io("read log", path, e))?;
        drop(file);
        let mut pos = 0usize;
        while let Some(len) = record_at(&data, pos) {
            on_record(&data[pos + HEADER..pos + HEADER + len])?;
            report.records += 1;
            pos += HEADER + len;
        }
        if pos < data.len()
            && let Some(next) = (pos + 1..data.len()).find(|q| record_at(&data, *q).is_some())
        {
            return Err(Error::internal(format!(
                "corrupt log {}: the record at offset {pos} is damaged but a valid record follows at \
                 offset {next}, so this is not a torn tail; refusing to open it (records before \
                 the damage: {})",
                path.display(),
                report.records
            )));
        }
        let valid = pos as u64;
        if (data.len() as u64) > valid {
            report.truncated_bytes = data.len() as u64 - valid;
            tracing::warn!(
                path = %path.display(),
                valid_bytes = valid,
                truncated_bytes = report.truncated_bytes,
                "log has a torn or corrupt tail, truncating it"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io("open log for truncation", path, e))?;
            f.set_len(valid)
                .map_err(|e| Error::io("truncate log", path, e))?;
            f.sync_all().map_err(|e| Error::io("sync log", path, e))?;
        }
        Ok((
            RecordLog {
                path: path.to_path_buf(),
                len: valid,
                exists: true,
            },
            report,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log's file exists yet (an empty log creates none until its first append).
    pub fn exists(&self) -> bool {
        self.exists
    }

    /// Bytes of valid records.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends records, all in one write; with `sync` they are durable when this returns.
    /// On error the log is rolled back to its previous length, so a failed append leaves no
    /// partial record that a later append would bury. [`RecordLog::try_append`] tells whether the
    /// failure left the log trustworthy.
    pub fn append(&mut self, bodies: &[&[u8]], sync: bool) -> Result<()> {
        self.try_append(bodies, sync).map_err(Error::from)
    }

    /// [`RecordLog::append`], telling a refusal that left the file untouched from a failed write
    /// or fsync, after which the file's content is unknown.
    pub fn try_append(
        &mut self,
        bodies: &[&[u8]],
        sync: bool,
    ) -> std::result::Result<(), AppendError> {
        let mut buf = Vec::with_capacity(bodies.iter().map(|b| b.len() + HEADER).sum());
        for body in bodies {
            if body.is_empty() {
                return Err(AppendError::Refused(Error::internal(
                    "an empty record cannot be told from a zero-filled tail",
                )));
            }
            if body.len() > MAX_RECORD_BYTES {
                return Err(AppendError::Refused(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "record of {} bytes is over the limit of {MAX_RECORD_BYTES}",
                        body.len()
                    ),
                )));
            }
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            buf.extend_from_slice(body);
        }
        if !self.exists
            && let Some(dir) = self.path.parent()
            && !dir.exists()
        {
            // the first write of a replica creates its directory (empty replicas own no files)
            std::fs::create_dir_all(dir)
                .map_err(|e| AppendError::Refused(Error::io("create", dir, e)))?;
            sync_parent_dir(dir).map_err(AppendError::Refused)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| AppendError::Refused(Error::io("open log for append", &self.path, e)))?;
        let mut sync_started = false;
        let res = f.write_all(&buf).and_then(|()| {
            sync_started = sync;
            if sync { f.sync_data() } else { Ok(()) }
        });
        if let Err(e) = res {
            // cut what may have been written so the log stays a sequence of records
            let cut = f.set_len(self.len);
            let error = Error::io("append to log", &self.path, e);
            // a full disk during the write, with the file cut back: nothing was synced or left
            // behind, so the log is as before and may be used again once there is room
            if error.kind == ErrorKind::InsufficientStorage && cut.is_ok() && !sync_started {
                return Err(AppendError::Refused(error));
            }
            return Err(AppendError::Failed(error));
        }
        if !self.exists {
            sync_parent_dir(&self.path).map_err(AppendError::Failed)?;
            self.exists = true;
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Empties the log (after its records were captured in a durable snapshot).
    pub fn clear(&mut self) -> Result<()> {
        if self.exists {
            let f = OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| Error::io("open log for truncation", &self.path, e))?;
            f.set_len(0)
                .map_err(|e| Error::io("truncate log", &self.path, e))?;
            f.sync_all()
                .map_err(|e| Error::io("sync log", &self.path, e))?;
        }
        self.len = 0;
        Ok(())
    }
}

/// Makes a directory entry (a created or renamed file) durable.
pub fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))?;
    sync_parent_dir(path)
}

/// A snapshot file: `[crc32 u32 LE][body]`; None if missing, an error if corrupt.
pub fn read_checksummed(path: &Path) -> Result<Option<Vec<u8>>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    if data.len() < 4 {
        return Err(Error::internal(format!(
            "{} is truncated ({} bytes)",
            path.display(),
            data.len()
        )));
    }
    let crc = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let body = data[4..].to_vec();
    if crc32fast::hash(&body) != crc {
        return Err(Error::internal(format!(
            "{} fails its checksum",
            path.display()
        )));
    }
    Ok(Some(body))
}

pub fn write_checksummed(path: &Path, body: &[u8]) -> Result<()> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    write_atomic(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path) -> (Vec<Vec<u8>>, OpenReport) {
        let mut out = Vec::new();
        let (_log, rep) = RecordLog::open(path, |r| {
            out.push(r.to_vec());
            Ok(())
        })
        .expect("open");
        (out, rep)
    }

    #[test]
    fn append_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("wal.log");
        let (mut log, rep) = RecordLog::open(&p, |_| Ok(())).expect("open");
        assert_eq!(rep.records, 0);
        assert!(!p.exists(), "an empty log creates no file");
        log.append(&[b"one", b"two"], true).expect("append");
        log.append(&[b"three"], false).expect("append");
        let (recs, rep) = collect(&p);
        assert_eq!(
            recs,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(rep.truncated_bytes, 0);

        // every possible torn tail of the last record is detected and cut
        let full = std::fs::read(&p).expect("read");
        let last_start = full.len() - (HEADER + 5);
        for cut in last_start + 1..full.len() {
            std::fs::write(&p, &full[..cut]).expect("write");
            let (recs, rep) = collect(&p);
            assert_eq!(recs.len(), 2, "cut at {cut}");
            assert_eq!(rep.truncated_bytes as usize, cut - last_start);
            assert_eq!(
                std::fs::metadata(&p).expect("meta").len() as usize,
                last_start
            );
        }
        // a flipped bit inside the log (valid records follow) is corruption: refused, naming the
        // file and the offset, and the file is left as it was
        let mut bad = full.clone();
        bad[HEADER + 1] ^= 0x40;
        std::fs::write(&p, &bad).expect("write");
        let e = RecordLog::open(&p, |_| Ok(())).expect_err("corrupt");
        assert!(
            e.message.contains("corrupt log") && e.message.contains("offset 0"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(&p.display().to_string()),
            "{}",
            e.message
        );
        assert_eq!(std::fs::read(&p).expect("read"), bad, "nothing was cut");
        // so is a damaged length field in the middle
        let mut bad = full.clone();
        let second = HEADER + 3;
        bad[second + 2] = 0x7f;
        std::fs::write(&p, &bad).expect("write");
        let e = RecordLog::open(&p, |_| Ok(())).expect_err("corrupt length");
        assert!(
            e.message.contains(&format!("offset {second}")),
            "{}",
            e.message
        );
        // the same flip in the last record cannot be told from a torn write: cut, with a warning
        let mut bad = full.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x40;
        std::fs::write(&p, &bad).expect("write");
        let (recs, rep) = collect(&p);
        assert_eq!(recs.len(), 2);
        assert_eq!(rep.truncated_bytes as usize, HEADER + 5);
    }

    #[test]
    fn a_zero_filled_tail_is_torn_and_empty_records_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("wal.log");
        let (mut log, _) = RecordLog::open(&p, |_| Ok(())).expect("open");
        log.append(&[b"one"], true).expect("append");
        match log.try_append(&[b""], true) {
            Err(AppendError::Refused(_)) => {}
            other => panic!("an empty record must be refused, got {other:?}"),
        }
        let mut data = std::fs::read(&p).expect("read");
        let valid = data.len();
        data.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&p, &data).expect("write");
        let (recs, rep) = collect(&p);
        assert_eq!(recs, vec![b"one".to_vec()]);
        assert_eq!(rep.truncated_bytes, 4096);
        assert_eq!(std::fs::metadata(&p).expect("meta").len() as usize, valid);
    }

    /// A write that fails for real (ENOSPC from /dev/full) is told apart from a refusal that left
    /// the file untouched.
    #[cfg(target_os = "linux")]
    #[test]
    fn failed_writes_are_told_from_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("wal.log");
        let (mut log, _) = RecordLog::open(&p, |_| Ok(())).expect("open");
        let big = vec![0u8; MAX_RECORD_BYTES + 1];
        match log.try_append(&[&big], true) {
            Err(AppendError::Refused(e)) => assert_eq!(e.kind, ErrorKind::PayloadTooLarge),
            other => panic!("expected a refusal, got {other:?}"),
        }
        std::os::unix::fs::symlink("/dev/full", &p).expect("symlink");
        match log.try_append(&[b"one"], true) {
            // /dev/full cannot be cut back, so the write counts as failed, not refused
            Err(AppendError::Failed(e)) => {
                assert_eq!(e.kind, ErrorKind::InsufficientStorage);
                assert!(e.message.contains("append to log"), "{}", e.message);
            }
            other => panic!("expected a failed write, got {other:?}"),
        }
        assert_eq!(log.len_bytes(), 0);
    }

    #[test]
    fn checksummed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("snap");
        assert_eq!(read_checksummed(&p).expect("missing is none"), None);
        write_checksummed(&p, b"hello").expect("write");
        assert_eq!(read_checksummed(&p).expect("read"), Some(b"hello".to_vec()));
        let mut raw = std::fs::read(&p).expect("read");
        raw[5] ^= 1;
        std::fs::write(&p, &raw).expect("write");
        assert!(read_checksummed(&p).is_err());
    }
}
