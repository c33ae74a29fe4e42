//! Files of a replica's indexed segments, so that a restarted replica, or a new replica copied
//! from another, serves at full speed without building its graphs again.
//!
//! A segment file is derived data: the points themselves (vectors, payloads, versions) live in
//! the WAL and the points snapshot, which stay the truth. At load, each point of the snapshot
//! and WAL whose vector is bit for bit the one a segment file holds for it is placed in that
//! segment ("adopted"); every other offset of the file is a tombstone, and a file that no point
//! adopts is deleted. So a file that is stale, left over, or from an older state can never
//! change what is served; a damaged one (checksums) is ignored and its graph built again.
//!
//! Format (version 1, integers little-endian):
//!
//! ```text
//! magic "TSXSEGMT" | version u8 = 1 | kind u8 (0 graph, 1 grouped) | 6 zero bytes
//! ids length u64 | the segment's point ids (tessera codec)
//! kind 0: the graph, vectors included (tessera-index's CompactGraph format, checksummed itself)
//! kind 1: layout length u64 | layout (tessera codec: the field, whether a global graph comes,
//!         each group's value, offsets and whether it has a graph)
//!         global graph length u64 | global graph, or rows length u64 | rows f32
//!         per group with a graph: length u64 | graph
//! crc32 (IEEE) of every byte before it, u32
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tessera_core::{Error, Result, codec};
use tessera_index::CompactGraph;

use crate::point::PointId;
use crate::segment::{Group, Groups, Vectors};

/// The layout of a grouped segment's file.
#[derive(Serialize, Deserialize)]
struct GroupedLayout {
    field: Option<String>,
    global: bool,
    groups: Vec<(String, Vec<u32>, bool)>,
}

const MAGIC: &[u8; 8] = b"TSXSEGMT";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 16;
/// The folder of a replica's directory its segment files are in.
pub const DIR: &str = "segments";
/// Files end in this; anything else in the folder (a temporary file) is not a segment.
pub const EXT: &str = "seg";

/// A fresh, unique file name for a segment built now.
pub fn fresh_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:032x}-{:08x}.{EXT}", rand::random::<u32>())
}

/// Whether `name` could be a segment file's name (never a path: no separators, no `..`).
pub fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .strip_suffix(EXT)
            .and_then(|s| s.strip_suffix('.'))
            .is_some_and(|stem| {
                !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            })
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.crc.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a segment's file atomically (a temporary file, fsync, rename) into `dir`; `vectors`
/// is a graph or groups (plain rows have no file).
pub fn write(dir: &Path, name: &str, ids: &[PointId], vectors: &Vectors) -> Result<PathBuf> {
    let io = |e: std::io::Error| Error::internal(format!("segment file {name}: {e}"));
    // the replica's own directory must exist: a replica removed meanwhile gets no files back
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
        _ => {}
    }
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let ids_bytes = codec::encode(&ids)?;
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = CrcWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    let kind = match vectors {
        Vectors::Graph(_) => 0u8,
        Vectors::Grouped(_) => 1,
        Vectors::Plain(_) => return Err(Error::internal("plain rows have no segment file")),
    };
    let layout = match vectors {
        Vectors::Grouped(gs) => Some(codec::encode(&GroupedLayout {
            field: gs.field.clone(),
            global: gs.global.is_some(),
            groups: gs
                .by_value
                .iter()
                .map(|(v, g)| (v.clone(), g.offs.clone(), g.graph.is_some()))
                .collect(),
        })?),
        _ => None,
    };
    let mut head = Vec::with_capacity(HEADER_LEN + 8);
    head.extend_from_slice(MAGIC);
    head.push(VERSION);
    head.push(kind);
    head.extend_from_slice(&[0u8; 6]);
    head.extend_from_slice(&(ids_bytes.len() as u64).to_le_bytes());
    let written = (|| -> std::io::Result<()> {
        w.write_all(&head)?;
        w.write_all(&ids_bytes)?;
        match vectors {
            Vectors::Graph(graph) => graph.write_to(&mut w)?,
            Vectors::Grouped(gs) => {
                let sized = |w: &mut CrcWriter<_>, b: &[u8]| -> std::io::Result<()> {
                    w.write_all(&(b.len() as u64).to_le_bytes())?;
                    w.write_all(b)
                };
                sized(&mut w, layout.as_deref().unwrap_or_default())?;
                match &gs.global {
                    Some(g) => sized(&mut w, &g.to_bytes())?,
                    None => {
                        let rows: Vec<u8> = gs.rows.iter().flat_map(|x| x.to_le_bytes()).collect();
                        sized(&mut w, &rows)?
                    }
                }
                // the same order as the layout's
                for g in gs.by_value.values() {
                    if let Some(graph) = &g.graph {
                        sized(&mut w, &graph.to_bytes())?;
                    }
                }
            }
            Vectors::Plain(_) => {}
        }
        let crc = w.crc.clone().finalize();
        w.inner.write_all(&crc.to_le_bytes())?;
        let file = w.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Reads a segment file: its point ids (offset order) and its vectors (a graph, or groups).
/// Any damage is an `Err`.
pub fn read(path: &Path) -> Result<(Vec<PointId>, Vectors)> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::internal(format!("segment file {}: {e}", path.display())))?;
    decode(&bytes)
        .map_err(|e| Error::internal(format!("segment file {}: {}", path.display(), e.message)))
}

/// Checks a file's header and checksum only (a transfer's arrival; [`read`] checks the rest
/// when the file is used).
pub fn check(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::internal(format!("segment file {}: {e}", path.display())))?;
    checked_body(&bytes)
        .map(|_| ())
        .map_err(|e| Error::internal(format!("segment file {}: {}", path.display(), e.message)))
}

fn checked_body(b: &[u8]) -> Result<&[u8]> {
    let corrupt = |what: &str| Error::internal(format!("damaged: {what}"));
    if b.len() < HEADER_LEN + 8 + 4 || &b[..8] != MAGIC {
        return Err(corrupt("not a segment file"));
    }
    if b[8] != VERSION {
        return Err(corrupt(&format!("unsupported version {}", b[8])));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(body)
}

fn decode(b: &[u8]) -> Result<(Vec<PointId>, Vectors)> {
    let corrupt = |what: &str| Error::internal(format!("damaged: {what}"));
    let body = checked_body(b)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&body[HEADER_LEN..HEADER_LEN + 8]);
    let ids_len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| corrupt("ids length"))?;
    let ids_end = (HEADER_LEN + 8)
        .checked_add(ids_len)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| corrupt("ids length"))?;
    let ids: Vec<PointId> = codec::decode(&body[HEADER_LEN + 8..ids_end])?;
    let graph_of =
        |b: &[u8]| CompactGraph::from_bytes(b).map_err(|e| corrupt(&format!("graph: {e}")));
    if body[9] == 0 {
        let graph = graph_of(&body[ids_end..])?;
        if graph.len() != ids.len() {
            return Err(corrupt("graph and ids differ in length"));
        }
        return Ok((ids, Vectors::Graph(std::sync::Arc::new(graph))));
    }
    if body[9] != 1 {
        return Err(corrupt("unknown kind"));
    }
    let mut rest = &body[ids_end..];
    let mut take = || -> Result<&[u8]> {
        if rest.len() < 8 {
            return Err(corrupt("truncated"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&rest[..8]);
        let n = usize::try_from(u64::from_le_bytes(len)).map_err(|_| corrupt("length"))?;
        let part = rest.get(8..8 + n).ok_or_else(|| corrupt("length"))?;
        rest = &rest[8 + n..];
        Ok(part)
    };
    let layout: GroupedLayout = codec::decode(take()?)?;
    let n = ids.len();
    let (global, rows) = if layout.global {
        let g = graph_of(take()?)?;
        if g.len() != n {
            return Err(corrupt("graph and ids differ in length"));
        }
        (Some(g), Vec::new())
    } else {
        let raw = take()?;
        if raw.len() % 4 != 0 || (n > 0 && raw.len() / 4 % n != 0) {
            return Err(corrupt("rows"));
        }
        let rows: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (None, rows)
    };
    let mut by_value = std::collections::HashMap::new();
    for (value, offs, has_graph) in layout.groups {
        if offs.iter().any(|&o| o as usize >= n) {
            return Err(corrupt("group offset out of range"));
        }
        let graph = if has_graph {
            let g = graph_of(take()?)?;
            if g.len() != offs.len() {
                return Err(corrupt("group graph and offsets differ in length"));
            }
            Some(g)
        } else {
            None
        };
        by_value.insert(value, Group { offs, graph });
    }
    let groups = Groups {
        global,
        rows,
        field: layout.field,
        by_value,
    };
    Ok((ids, Vectors::Grouped(std::sync::Arc::new(groups))))
}

/// The segment files in `dir` (none if it does not exist), by name.
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    names
}

/// Deletes segment files (and leftover temporary files) of `dir` not named in `keep`.
pub fn remove_except(dir: &Path, keep: &[String]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            remove(dir, &name);
        }
    }
}

/// Deletes one segment file; a missing one is fine.
pub fn remove(dir: &Path, name: &str) {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => tracing::debug!(file = name, "segment file removed"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(file = name, error = %e, "segment file not removed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_index::{GraphParams, Metric};

    fn graph(n: usize) -> CompactGraph {
        let v: Vec<f32> = (0..n * 4).map(|i| (i % 7) as f32 + 0.5).collect();
        CompactGraph::build_with_stats(&v, 4, Metric::Euclid, GraphParams::default(), 1)
            .expect("build")
            .0
    }

    #[test]
    fn a_segment_file_round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let ids: Vec<PointId> = (0..50).map(PointId::Num).collect();
        let g = graph(50);
        let name = fresh_name();
        assert!(valid_name(&name));
        let bytes = g.to_bytes();
        let path = write(
            dir.path(),
            &name,
            &ids,
            &Vectors::Graph(std::sync::Arc::new(g)),
        )
        .expect("write");
        let (back_ids, back) = read(&path).expect("read");
        assert_eq!(back_ids, ids);
        let Vectors::Graph(back) = back else {
            panic!("not a graph")
        };
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(list(dir.path()), vec![name.clone()]);
        // one flipped byte anywhere is refused
        let mut bytes = std::fs::read(&path).expect("bytes");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(read(&path).is_err());
        bytes.truncate(mid);
        std::fs::write(&path, &bytes).expect("write");
        assert!(read(&path).is_err());
        remove_except(dir.path(), &[]);
        assert!(list(dir.path()).is_empty());
    }

    #[test]
    fn names_are_never_paths() {
        assert!(!valid_name("../x.seg"));
        assert!(!valid_name("a/b.seg"));
        assert!(!valid_name("abc.snap"));
        assert!(valid_name("0af-1.seg"));
    }
}
