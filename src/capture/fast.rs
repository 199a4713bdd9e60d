//! Files through `pcap-parser`: a pure-Rust streaming reader over a large
//! buffer. No FFI call per packet and no copy: frames are slices of the
//! read buffer. Reads classic pcap (either byte order, µs or ns) and pcapng,
//! including pcapng files whose interfaces have different link types, which
//! libpcap refuses.

use std::fs::File;
use std::path::Path;

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use super::{End, Frame};

/// Read buffer: large enough for any sane record (libpcap's own limit is
/// 256 KiB per packet), big enough to amortise `read` calls.
const BUFFER: usize = 4 << 20;

/// One pcapng interface: link type and timestamp units.
#[derive(Clone, Copy)]
struct Iface {
    linktype: i32,
    /// Timestamp units per second.
    resolution: u64,
    offset: i64,
}

/// The upper bits of a classic pcap header's link-type field carry FCS
/// information (pcap-savefile(5)); libpcap masks them off too.
const LINKTYPE_MASK: i32 = 0x03ff_ffff;

pub fn read(path: &Path, on: &mut dyn FnMut(Frame<'_>)) -> Result<End, crate::Error> {
    if is_old_pcap(path) {
        // Before format 2.4 the record's two length fields may be swapped;
        // libpcap knows those files, the streaming parser does not.
        return super::libpcap::read(path, None, on);
    }
    let file = File::open(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    let mut reader = match create_reader(BUFFER, file) {
        Ok(r) => r,
        Err(e) => {
            let why = match e {
                PcapError::Eof => "the file is empty (0 bytes): not a pcap or pcapng capture".to_string(),
                PcapError::Incomplete(_) | PcapError::UnexpectedEof => {
                    "the file ends inside its header: not a complete pcap or pcapng capture".into()
                }
                _ => super::libpcap::explain_open_error(path, "unknown file format"),
            };
            return Err(crate::Error::Capture { path: path.to_path_buf(), message: why });
        }
    };
    // Classic pcap: one link type and one timestamp unit for the file.
    let mut legacy: Option<(i32, bool)> = None;
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut packets = 0u64;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((h.network.0 & LINKTYPE_MASK, h.is_nanosecond_precision()))
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (linktype, nano) = legacy.unwrap_or((1, false));
                        let frac = if nano { b.ts_usec as i64 / 1000 } else { b.ts_usec as i64 };
                        let data = &b.data[..(b.caplen as usize).min(b.data.len())];
                        on(Frame {
                            ts: b.ts_sec as i64 * 1_000_000 + frac, // u32 seconds: no overflow
                            wire_len: b.origlen.max(b.caplen),
                            linktype,
                            data,
                        });
                        packets += 1;
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => ifaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => ifaces.push(Iface {
                        linktype: idb.linktype.0,
                        resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                        offset: idb.ts_offset(),
                    }),
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let Some(ifc) = ifaces.get(epb.if_id as usize).copied() else {
                            let msg = format!(
                                "packet block names interface {} but the file describes {}",
                                epb.if_id,
                                ifaces.len()
                            );
                            return Ok(End::Broken { packets, message: msg });
                        };
                        let units = (epb.ts_high as u64) << 32 | epb.ts_low as u64;
                        let ts = super::sane_ts(
                            to_micros(units, ifc.resolution).saturating_add(ifc.offset.saturating_mul(1_000_000)),
                        );
                        let data = &epb.data[..(epb.caplen as usize).min(epb.data.len())];
                        on(Frame { ts, wire_len: epb.origlen.max(epb.caplen), linktype: ifc.linktype, data });
                        packets += 1;
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        // RFC-draft pcapng §4.4: SPBs belong to interface 0 and carry no timestamp.
                        let linktype = ifaces.first().map_or(1, |i| i.linktype);
                        on(Frame { ts: 0, wire_len: spb.origlen, linktype, data: spb.data });
                        packets += 1;
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => return Ok(End::Complete),
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    return Ok(End::Broken { packets, message: "read error".into() });
                }
            }
            Err(PcapError::UnexpectedEof) => {
                return Ok(End::Broken {
                    packets,
                    message: "the file ends in the middle of a record (truncated capture)".into(),
                });
            }
            Err(PcapError::BufferTooSmall) => {
                return Ok(End::Broken {
                    packets,
                    message: format!("a record claims more than {} MiB: the file is corrupt here", BUFFER >> 20),
                });
            }
            Err(e) => {
                return Ok(End::Broken {
                    packets,
                    message: format!("unreadable record: {e:?}").chars().take(200).collect(),
                });
            }
        }
    }
}

/// Classic pcap, read by hand in batches: every complete record in the
/// read buffer goes to `on` in one slice of frames that point into the
/// buffer, so nothing is copied and the caller can look ahead over the
/// batch (the audit prefetches flow-table slots 16 frames ahead). The
/// record layout is pcap-savefile(5): a 24-byte file header, then per
/// record ts_sec, ts_frac, caplen, origlen (u32 each, in the header's byte
/// order) and caplen bytes. Damage is reported as [`read`] reports it.
pub fn read_classic(path: &Path, on: &mut dyn FnMut(&[Frame<'_>])) -> Result<End, crate::Error> {
    let mut file = File::open(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    let mut head = [0u8; 24];
    let got = fill(&mut file, &mut head).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    let Some((be, nano)) = classic_magic(&head[..got]) else {
        return Err(crate::Error::Capture {
            path: path.to_path_buf(),
            message: "the file ends inside its header: not a complete pcap or pcapng capture".into(),
        });
    };
    if got < head.len() {
        return Err(crate::Error::Capture {
            path: path.to_path_buf(),
            message: "the file ends inside its header: not a complete pcap or pcapng capture".into(),
        });
    }
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if be {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let linktype = (u32_at(&head, 20) as i32) & LINKTYPE_MASK;
    let mut buf = vec![0u8; BUFFER];
    let (mut start, mut end, mut packets, mut eof) = (0usize, 0usize, 0u64, false);
    loop {
        let mut frames = Vec::with_capacity(1024);
        let mut p = start;
        let mut too_big = false;
        while end - p >= 16 {
            let caplen = u32_at(&buf, p + 8) as usize;
            if caplen > BUFFER - 16 {
                too_big = true;
                break;
            }
            if end - p - 16 < caplen {
                break;
            }
            let frac = u32_at(&buf, p + 4) as i64;
            frames.push(Frame {
                ts: u32_at(&buf, p) as i64 * 1_000_000 + if nano { frac / 1000 } else { frac }, // u32 seconds: no overflow
                wire_len: u32_at(&buf, p + 12).max(caplen as u32),
                linktype,
                data: &buf[p + 16..p + 16 + caplen],
            });
            p += 16 + caplen;
        }
        if !frames.is_empty() {
            on(&frames);
            packets += frames.len() as u64;
        }
        drop(frames);
        start = p;
        if too_big {
            return Ok(End::Broken {
                packets,
                message: format!("a record claims more than {} MiB: the file is corrupt here", BUFFER >> 20),
            });
        }
        if eof {
            return Ok(if start == end {
                End::Complete
            } else {
                End::Broken { packets, message: "the file ends in the middle of a record (truncated capture)".into() }
            });
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        match fill(&mut file, &mut buf[end..]) {
            Ok(n) => {
                eof = end + n < buf.len();
                end += n;
            }
            Err(e) => return Ok(End::Broken { packets, message: format!("read error: {e}") }),
        }
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn fill(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A classic pcap file header's byte order (big-endian?), timestamp unit
/// (nanoseconds?) and version; `None` when it is not one.
fn classic_header(h: &[u8]) -> Option<(bool, bool, (u16, u16))> {
    let (be, nano) = match h.get(..4)? {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => return None,
    };
    let v = h.get(4..8)?;
    let version = if be {
        (u16::from_be_bytes([v[0], v[1]]), u16::from_be_bytes([v[2], v[3]]))
    } else {
        (u16::from_le_bytes([v[0], v[1]]), u16::from_le_bytes([v[2], v[3]]))
    };
    Some((be, nano, version))
}

/// Byte order and timestamp unit of a classic pcap of version 2.4 or later
/// (before 2.4 a record's two length fields may be swapped).
fn classic_magic(h: &[u8]) -> Option<(bool, bool)> {
    classic_header(h).filter(|&(.., v)| v >= (2, 4)).map(|(be, nano, _)| (be, nano))
}

/// The first 8 bytes of `path`'s header, parsed.
fn header_of(path: &Path) -> Option<(bool, bool, (u16, u16))> {
    let mut h = [0u8; 8];
    let n = File::open(path).and_then(|mut f| fill(&mut f, &mut h)).ok()?;
    classic_header(&h[..n])
}

/// True for a classic pcap [`read_classic`] reads (version 2.4 or later).
pub fn is_classic_pcap(path: &Path) -> bool {
    header_of(path).is_some_and(|(.., v)| v >= (2, 4))
}

/// A classic pcap whose version is below 2.4.
fn is_old_pcap(path: &Path) -> bool {
    header_of(path).is_some_and(|(.., v)| v < (2, 4))
}

/// `units` at `resolution` per second, in microseconds, without overflow.
fn to_micros(units: u64, resolution: u64) -> i64 {
    let secs = units / resolution;
    let rem = units % resolution;
    let micros = (rem as u128 * 1_000_000 / resolution as u128) as i64;
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1_000_000).saturating_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Big-endian, nanosecond classic pcap (magic a1b23c4d): timestamps in
    /// µs, lengths and link type read in the file's byte order, a cut last
    /// record reported as truncation after the whole ones.
    #[test]
    fn classic_big_endian_nanoseconds_and_a_cut_record() {
        let mut f = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 101];
        for (sec, ns, data) in [(10u32, 1_500u32, &[0x45u8; 20][..]), (11, 999_999_999, &[0x60; 40][..])] {
            for v in [sec, ns, data.len() as u32, data.len() as u32 + 4] {
                f.extend_from_slice(&v.to_be_bytes());
            }
            f.extend_from_slice(data);
        }
        f.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 50]); // a header cut short
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("be.pcap");
        std::fs::write(&path, &f).unwrap();
        assert!(is_classic_pcap(&path));
        let mut seen = Vec::new();
        let end =
            read_classic(&path, &mut |fs| seen.extend(fs.iter().map(|x| (x.ts, x.wire_len, x.linktype, x.data.len()))))
                .unwrap();
        assert_eq!(seen, vec![(10_000_001, 24, 101, 20), (11_999_999, 44, 101, 40)]);
        assert!(matches!(end, End::Broken { packets: 2, .. }), "{end:?}");
    }

    #[test]
    fn timestamp_units() {
        assert_eq!(to_micros(1_500_000, 1_000_000), 1_500_000);
        assert_eq!(to_micros(1_500_000_000, 1_000_000_000), 1_500_000);
        assert_eq!(to_micros(u64::MAX, 1_000_000_000), (u64::MAX / 1_000_000_000) as i64 * 1_000_000 + 709_551);
    }
}
