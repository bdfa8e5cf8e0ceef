//! The snapshot wire format, written and read as a stream.
//!
//! A snapshot is `codec::encode` of `(last_applied, membership, records)`: the format-version
//! byte, then postcard of the two header fields, then the records as a postcard sequence (a
//! varint count, then each record as its table tag byte, and key and value each as a varint
//! length and the bytes). Writing and reading it record by record, instead of as one value,
//! keeps neither a whole snapshot nor a second copy of it in memory, and the bytes stay exactly
//! those of the earlier whole-value encoding (a test below holds them to it).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use openraft::LogId;

use crate::codec::{FORMAT_V1, FORMAT_V2, FORMAT_V3};
use crate::snapshot_file::{io_err, SnapshotError};
use crate::{NodeId, NodeInfo, StoreError};

pub(crate) type Membership = openraft::StoredMembership<NodeId, NodeInfo>;

/// What comes before the records.
#[derive(Debug)]
pub(crate) struct SnapshotHeader {
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: Membership,
}

/// Scratch space for decoding the header; only a single string of the membership (a node
/// address) has to fit in it at once.
const HEADER_SCRATCH: u64 = 1 << 20;

fn corrupt(reason: impl Into<String>) -> SnapshotError {
    StoreError::Corrupt {
        what: "snapshot",
        reason: reason.into(),
    }
    .into()
}

fn write_varint(w: &mut impl Write, mut n: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut used = 0;
    for slot in &mut buf {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        used += 1;
        if n == 0 {
            *slot = low;
            break;
        }
        *slot = low | 0x80;
    }
    w.write_all(&buf[..used])
}

/// The bytes before the first record: version, header and record count.
pub(crate) fn encode_header(header: &SnapshotHeader, count: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_V3];
    out = postcard::to_extend(&(&header.last_applied, &header.membership), out).map_err(|e| {
        StoreError::Encode {
            what: "snapshot",
            reason: e.to_string(),
        }
    })?;
    // Writing to a Vec cannot fail.
    let _ = write_varint(&mut out, count);
    Ok(out)
}

pub(crate) fn write_record(
    w: &mut impl Write,
    tag: u8,
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    w.write_all(&[tag])?;
    write_varint(w, key.len() as u64)?;
    w.write_all(key)?;
    write_varint(w, value.len() as u64)?;
    w.write_all(value)
}

/// One record of a snapshot: (table tag, key, value).
pub(crate) type Record = (u8, Vec<u8>, Vec<u8>);

/// Reads a snapshot of a known length from `R`, checking every length it meets against what is
/// left, so that no field can make it allocate more than the snapshot holds.
#[derive(Debug)]
pub(crate) struct SnapshotReader<R> {
    inner: R,
    /// Bytes of the snapshot not read yet.
    left: u64,
    records_left: u64,
    path: PathBuf,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header of a `len`-byte snapshot read from `inner` (at `path`, for errors).
    pub(crate) fn open(
        inner: R,
        len: u64,
        path: &Path,
    ) -> Result<(Self, SnapshotHeader), SnapshotError> {
        let mut reader = Self {
            inner,
            left: len,
            records_left: 0,
            path: path.to_path_buf(),
        };
        match reader.byte()? {
            FORMAT_V3 => {}
            FORMAT_V2 => {
                return Err(corrupt(
                    "format 2, written by a release before key policies and party enrolment: not readable by this release",
                ))
            }
            FORMAT_V1 => {
                return Err(corrupt(
                    "format 1, written by a release before TLS and the audit chain: not readable by this release",
                ))
            }
            v => return Err(corrupt(format!("unknown format version {v}"))),
        }
        let mut scratch = vec![0u8; usize::try_from(len.min(HEADER_SCRATCH)).unwrap_or(0)];
        let counted = Counted {
            inner: &mut reader.inner,
            read: 0,
            limit: reader.left,
        };
        let (last_applied, membership, read) = {
            let ((last_applied, membership), (counted, _)) = postcard::from_io::<
                (Option<LogId<NodeId>>, Membership),
                _,
            >((counted, &mut scratch))
            .map_err(|e| corrupt(format!("header: {e}")))?;
            (last_applied, membership, counted.read)
        };
        reader.left -= read;
        reader.records_left = reader.varint()?;
        Ok((
            reader,
            SnapshotHeader {
                last_applied,
                membership,
            },
        ))
    }

    /// The next record, or `None` after the last one.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        if self.records_left == 0 {
            return Ok(None);
        }
        let tag = self.byte()?;
        let key = self.bytes()?;
        let value = self.bytes()?;
        self.records_left -= 1;
        Ok(Some((tag, key, value)))
    }

    /// Checks that every record was read and nothing follows them.
    pub(crate) fn finish(self) -> Result<(), SnapshotError> {
        if self.records_left != 0 {
            return Err(corrupt(format!(
                "{} records were not read",
                self.records_left
            )));
        }
        if self.left != 0 {
            return Err(corrupt(format!(
                "{} bytes follow the last record",
                self.left
            )));
        }
        Ok(())
    }

    fn take(&mut self, n: u64) -> Result<(), SnapshotError> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(corrupt(format!(
                "a field of {n} bytes runs past the end ({} bytes left)",
                self.left
            ))),
        }
    }

    fn byte(&mut self) -> Result<u8, SnapshotError> {
        self.take(1)?;
        let mut b = [0u8; 1];
        self.inner
            .read_exact(&mut b)
            .map_err(io_err("read", &self.path))?;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut n = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            // The tenth byte holds the 64th bit only.
            if i == 9 && b > 1 {
                return Err(corrupt("a length overflows 64 bits"));
            }
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt("a length overflows 64 bits"))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let n = self.varint()?;
        self.take(n)?;
        let n = usize::try_from(n).map_err(|_| corrupt("a field is too large"))?;
        let mut out = vec![0u8; n];
        self.inner
            .read_exact(&mut out)
            .map_err(io_err("read", &self.path))?;
        Ok(out)
    }
}

/// Counts what postcard reads of the header, and stops it at the end of the snapshot.
struct Counted<'a, R> {
    inner: &'a mut R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = usize::try_from(self.limit - self.read).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, Membership as RaftMembership};
    use serde::Serialize;

    use super::*;
    use crate::codec::encode;

    /// The whole-value layout snapshots were encoded with before they were streamed.
    #[derive(Serialize)]
    struct WholePayload {
        last_applied: Option<LogId<NodeId>>,
        membership: Membership,
        records: Vec<(u8, Vec<u8>, Vec<u8>)>,
    }

    fn sample() -> WholePayload {
        let nodes = BTreeMap::from([
            (
                1,
                NodeInfo {
                    grpc_addr: "10.0.0.1:7000".into(),
                    http_addr: "10.0.0.1:8080".into(),
                    ..Default::default()
                },
            ),
            (
                2,
                NodeInfo {
                    grpc_addr: "10.0.0.2:7000".into(),
                    http_addr: "10.0.0.2:8080".into(),
                    ..Default::default()
                },
            ),
        ]);
        let log_id = LogId::new(CommittedLeaderId::new(3, 1), 300);
        WholePayload {
            last_applied: Some(log_id),
            membership: Membership::new(
                Some(LogId::new(CommittedLeaderId::new(2, 1), 7)),
                RaftMembership::new(vec![BTreeSet::from([1, 2])], nodes),
            ),
            records: vec![
                (1, b"k1".to_vec(), vec![9; 200]),
                (2, Vec::new(), Vec::new()),
                (5, vec![0xff; 130], b"v".to_vec()),
                (7, vec![1; 20_000], vec![2; 70_000]),
            ],
        }
    }

    fn stream(payload: &WholePayload) -> Vec<u8> {
        let header = SnapshotHeader {
            last_applied: payload.last_applied,
            membership: payload.membership.clone(),
        };
        let mut out = encode_header(&header, payload.records.len() as u64).unwrap();
        for (tag, key, value) in &payload.records {
            write_record(&mut out, *tag, key, value).unwrap();
        }
        out
    }

    fn read_all(bytes: &[u8]) -> Result<(SnapshotHeader, Vec<Record>), SnapshotError> {
        let (mut reader, header) =
            SnapshotReader::open(bytes, bytes.len() as u64, Path::new("test"))?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        reader.finish()?;
        Ok((header, records))
    }

    #[test]
    fn streamed_snapshots_are_byte_for_byte_the_whole_value_encoding() {
        let payload = sample();
        assert_eq!(stream(&payload), encode("snapshot", &payload).unwrap());
        let empty = WholePayload {
            last_applied: None,
            membership: Membership::default(),
            records: Vec::new(),
        };
        assert_eq!(stream(&empty), encode("snapshot", &empty).unwrap());
    }

    #[test]
    fn whole_value_snapshots_read_back_record_by_record() {
        let payload = sample();
        let bytes = encode("snapshot", &payload).unwrap();
        let (header, records) = read_all(&bytes).unwrap();
        assert_eq!(header.last_applied, payload.last_applied);
        assert_eq!(header.membership, payload.membership);
        assert_eq!(records, payload.records);
    }

    #[test]
    fn damaged_snapshots_are_refused_without_allocating_their_claims() {
        let bytes = encode("snapshot", &sample()).unwrap();
        // Cut anywhere, the snapshot is refused.
        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(read_all(&trailing).is_err());
        let mut version = bytes.clone();
        version[0] = 4;
        assert!(read_all(&version)
            .unwrap_err()
            .to_string()
            .contains("version 4"));
        version[0] = 2;
        assert!(read_all(&version)
            .unwrap_err()
            .to_string()
            .contains("format 2"));
        version[0] = 1;
        assert!(read_all(&version)
            .unwrap_err()
            .to_string()
            .contains("format 1"));

        // A record claiming a key of 2^62 bytes is refused for want of bytes, not allocated.
        let header = SnapshotHeader {
            last_applied: None,
            membership: Membership::default(),
        };
        let mut huge = encode_header(&header, 1).unwrap();
        huge.push(1);
        write_varint(&mut huge, 1 << 62).unwrap();
        huge.extend_from_slice(b"short");
        let err = read_all(&huge).unwrap_err().to_string();
        assert!(err.contains("runs past the end"), "{err}");
        // And a count of more records than there are.
        let mut many = encode_header(&header, u64::MAX).unwrap();
        write_record(&mut many, 1, b"k", b"v").unwrap();
        assert!(read_all(&many).is_err());
    }
}
