//! Persistence format of [`CompactGraph`] (version 1, all integers and floats little-endian):
//!
//! ```text
//! magic "TSXGRAPH" | version u8 = 1 | metric u8 (0 cosine, 1 dot, 2 euclid) | 6 zero bytes
//! dim u64 | n u64 | entry u32 | upper layer count u32
//! vectors:  n * dim f32
//! layer 0:  n + 1 offsets u32 | neighbour count u64 | neighbours u32
//! per upper layer: node count u64 | nodes u32 | node count + 1 offsets u32 |
//!                  neighbour count u64 | neighbours u32
//! crc32 (IEEE) of every byte before it, u32
//! ```
//!
//! Decoding checks the checksum, every length against the bytes left (before allocating), and all
//! graph invariants, so corrupt or truncated input is an `Err`, never a panic or a huge allocation.

use crate::graph::{CompactGraph, UpperLayer};
use crate::{IndexError, Metric, kernels};

const MAGIC: &[u8; 8] = b"TSXGRAPH";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 1 + 6 + 8 + 8 + 4 + 4;
/// hnsw_rs never produces more than 16 layers; anything above is corruption.
const MAX_UPPER_LAYERS: usize = 64;

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::Euclid => 2,
    }
}

/// A writer that checksums what passes through it.
struct CrcWriter<'a, W: std::io::Write> {
    inner: &'a mut W,
    crc: crc32fast::Hasher,
}

impl<W: std::io::Write> CrcWriter<'_, W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.inner.write_all(b)
    }

    fn u32s(&mut self, xs: &[u32], buf: &mut Vec<u8>) -> std::io::Result<()> {
        for chunk in xs.chunks(16 << 10) {
            buf.clear();
            for x in chunk {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            self.put(buf)?;
        }
        Ok(())
    }
}

impl CompactGraph {
    /// Serialises the graph (vectors included) into the versioned format above.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.memory_bytes());
        // writing into memory cannot fail
        let _ = self.write_to(&mut out);
        out
    }

    /// Streams the same bytes as [`CompactGraph::to_bytes`] into `w` without a copy of the
    /// whole graph in memory (a segment's file is written from its build thread).
    pub fn write_to<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        let mut w = CrcWriter {
            inner: w,
            crc: crc32fast::Hasher::new(),
        };
        let mut head = Vec::with_capacity(HEADER_LEN);
        head.extend_from_slice(MAGIC);
        head.push(VERSION);
        head.push(metric_code(self.metric));
        head.extend_from_slice(&[0u8; 6]);
        head.extend_from_slice(&(self.dim as u64).to_le_bytes());
        head.extend_from_slice(&(self.n as u64).to_le_bytes());
        head.extend_from_slice(&self.entry.to_le_bytes());
        head.extend_from_slice(&(self.upper.len() as u32).to_le_bytes());
        w.put(&head)?;
        let mut buf = Vec::with_capacity(64 << 10);
        for chunk in self.vectors.chunks(16 << 10) {
            buf.clear();
            for v in chunk {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.put(&buf)?;
        }
        w.u32s(&self.l0_offsets, &mut buf)?;
        w.put(&(self.l0_neighbors.len() as u64).to_le_bytes())?;
        w.u32s(&self.l0_neighbors, &mut buf)?;
        for layer in &self.upper {
            w.put(&(layer.nodes.len() as u64).to_le_bytes())?;
            w.u32s(&layer.nodes, &mut buf)?;
            w.u32s(&layer.offsets, &mut buf)?;
            w.put(&(layer.neighbors.len() as u64).to_le_bytes())?;
            w.u32s(&layer.neighbors, &mut buf)?;
        }
        let crc = w.crc.clone().finalize();
        w.inner.write_all(&crc.to_le_bytes())
    }

    /// Parses bytes written by [`CompactGraph::to_bytes`]. Returns `Err` on any corruption,
    /// truncation or unsupported version; never panics.
    pub fn from_bytes(b: &[u8]) -> Result<CompactGraph, IndexError> {
        if b.len() < HEADER_LEN + 4 {
            return Err(IndexError::Corrupt("too short"));
        }
        if &b[..8] != MAGIC {
            return Err(IndexError::Corrupt("bad magic"));
        }
        if b[8] != VERSION {
            return Err(IndexError::UnsupportedVersion(b[8]));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(IndexError::Corrupt("checksum mismatch"));
        }
        let mut r = Reader { b: body, pos: 9 };
        let metric = match r.u8()? {
            0 => Metric::Cosine,
            1 => Metric::Dot,
            2 => Metric::Euclid,
            _ => return Err(IndexError::Corrupt("unknown metric")),
        };
        if r.take(6)?.iter().any(|&x| x != 0) {
            return Err(IndexError::Corrupt("reserved bytes set"));
        }
        let dim = r.len_u64()?;
        let n = r.len_u64()?;
        let entry = r.u32()?;
        let n_upper = r.u32()? as usize;
        if dim == 0 {
            return Err(IndexError::Corrupt("zero dimension"));
        }
        if n >= u32::MAX as usize || n_upper > MAX_UPPER_LAYERS {
            return Err(IndexError::Corrupt("size out of range"));
        }
        let n_floats = n
            .checked_mul(dim)
            .ok_or(IndexError::Corrupt("size out of range"))?;
        let vectors = r.f32s(n_floats)?;
        // The same bound `build` enforces: distance kernels (anndists' asserts included) never see
        // a NaN or an overflow.
        let mut max_norm_sq = 0f32;
        for row in vectors.chunks_exact(dim) {
            if !row.iter().all(|x| x.is_finite()) {
                return Err(IndexError::Corrupt("non-finite vector component"));
            }
            max_norm_sq = max_norm_sq.max(kernels::dot(row, row));
        }
        if !(4.0 * max_norm_sq).is_finite() {
            return Err(IndexError::Corrupt("vector norm out of range"));
        }
        let l0_offsets = r.u32s(n + 1)?;
        let l0_len = r.len_u64()?;
        let l0_neighbors = r.u32s(l0_len)?;
        check_csr(&l0_offsets, &l0_neighbors)?;
        if l0_neighbors.iter().any(|&x| x as usize >= n) {
            return Err(IndexError::Corrupt("neighbour id out of range"));
        }
        let mut upper: Vec<UpperLayer> = Vec::with_capacity(n_upper);
        for _ in 0..n_upper {
            let count = r.len_u64()?;
            let nodes = r.u32s(count)?;
            let offsets = r.u32s(count.checked_add(1).ok_or(IndexError::Corrupt("size"))?)?;
            let nb_len = r.len_u64()?;
            let neighbors = r.u32s(nb_len)?;
            check_csr(&offsets, &neighbors)?;
            if nodes.is_empty() || !nodes.windows(2).all(|w| w[0] < w[1]) {
                return Err(IndexError::Corrupt("upper layer nodes not sorted"));
            }
            let below: &[u32] = match upper.last() {
                Some(l) => &l.nodes,
                None => &[],
            };
            if nodes.iter().any(|&x| x as usize >= n)
                || (!below.is_empty() && !is_subset(&nodes, below))
            {
                return Err(IndexError::Corrupt(
                    "upper layer node not on the layer below",
                ));
            }
            if neighbors.iter().any(|x| nodes.binary_search(x).is_err()) {
                return Err(IndexError::Corrupt(
                    "upper layer neighbour not on its layer",
                ));
            }
            upper.push(UpperLayer {
                nodes,
                offsets,
                neighbors,
            });
        }
        if r.pos != body.len() {
            return Err(IndexError::Corrupt("trailing bytes"));
        }
        if n == 0 {
            if !upper.is_empty() || entry != 0 {
                return Err(IndexError::Corrupt("empty graph with links"));
            }
        } else {
            let top_ok = match upper.last() {
                Some(top) => top.nodes.binary_search(&entry).is_ok(),
                None => (entry as usize) < n,
            };
            if !top_ok {
                return Err(IndexError::Corrupt("entry point not on the top layer"));
            }
        }
        Ok(CompactGraph::from_parts(
            dim,
            metric,
            vectors,
            entry,
            l0_offsets,
            l0_neighbors,
            upper,
        ))
    }
}

/// `offsets` must start at 0, never decrease and end at `neighbors.len()`.
fn check_csr(offsets: &[u32], neighbors: &[u32]) -> Result<(), IndexError> {
    let ok = offsets.first() == Some(&0)
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets.last().map(|&x| x as usize) == Some(neighbors.len());
    if ok {
        Ok(())
    } else {
        Err(IndexError::Corrupt("bad offsets"))
    }
}

/// Both sorted strictly increasing.
fn is_subset(small: &[u32], big: &[u32]) -> bool {
    let mut j = 0;
    for &x in small {
        while j < big.len() && big[j] < x {
            j += 1;
        }
        if j == big.len() || big[j] != x {
            return false;
        }
    }
    true
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], IndexError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.b.len())
            .ok_or(IndexError::Corrupt("truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, IndexError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, IndexError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A u64 length that must fit in usize.
    fn len_u64(&mut self) -> Result<usize, IndexError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| IndexError::Corrupt("length overflow"))
    }

    fn words(&mut self, count: usize) -> Result<&'a [u8], IndexError> {
        let len = count
            .checked_mul(4)
            .ok_or(IndexError::Corrupt("length overflow"))?;
        self.take(len)
    }

    fn u32s(&mut self, count: usize) -> Result<Vec<u32>, IndexError> {
        Ok(self
            .words(count)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn f32s(&mut self, count: usize) -> Result<Vec<f32>, IndexError> {
        Ok(self
            .words(count)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
