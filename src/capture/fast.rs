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

/// Classic pcap, read by hand in batches: every complete record goes to
/// `on` in a slice of frames that point into the file's bytes, so nothing
/// is copied and the caller can look ahead over the batch (the audit
/// prefetches flow-table slots 16 frames ahead). The record layout is
/// pcap-savefile(5): a 24-byte file header, then per record ts_sec,
/// ts_frac, caplen, origlen (u32 each, in the header's byte order) and
/// caplen bytes. Damage is reported as [`read`] reports it.
///
/// A regular file is read through memory maps, a [`WINDOW`] at a time
/// ([`read_classic_mapped`]): the reading thread copies nothing (measured
/// with 2 threads on 10 M packets: 12 % less CPU time on the reading thread,
/// which is the one that bounds the audit). Anything else (a FIFO), or a
/// file that cannot be mapped, is read into a buffer
/// ([`read_classic_buffered`]); both give the same frames and the same end.
pub fn read_classic(path: &Path, on: &mut dyn FnMut(&[Frame<'_>])) -> Result<End, crate::Error> {
    let file = File::open(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    if let Some(end) = read_classic_mapped(path, &file, WINDOW, on)? {
        return Ok(end);
    }
    read_classic_buffered(path, file, on)
}

/// The file header's facts: byte order, nanoseconds, link type; the
/// error when `head` (what the file has of its first 24 bytes) is not one.
fn classic_file_header(path: &Path, head: &[u8]) -> Result<(bool, bool, i32), crate::Error> {
    match classic_magic(head) {
        Some((be, nano)) if head.len() >= 24 => Ok((be, nano, (read_u32(be, head, 20) as i32) & LINKTYPE_MASK)),
        _ => Err(crate::Error::Capture {
            path: path.to_path_buf(),
            message: "the file ends inside its header: not a complete pcap or pcapng capture".into(),
        }),
    }
}

#[inline(always)]
fn read_u32(be: bool, b: &[u8], i: usize) -> u32 {
    let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
    if be {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

/// Why [`records`] stopped.
#[derive(PartialEq, Eq)]
enum Stop {
    /// `max` frames taken.
    Full,
    /// The next record is not all in `buf`.
    Short,
    /// The next record claims more than [`BUFFER`].
    TooBig,
}

/// Parses complete records from `buf` into `frames`, at most `max`; the
/// bytes taken and why it stopped.
#[inline]
fn records<'b>(
    buf: &'b [u8],
    (be, nano, linktype): (bool, bool, i32),
    frames: &mut Vec<Frame<'b>>,
    max: usize,
) -> (usize, Stop) {
    let mut p = 0;
    let end = buf.len();
    for _ in 0..max {
        if end - p < 16 {
            return (p, Stop::Short);
        }
        let caplen = read_u32(be, buf, p + 8) as usize;
        if caplen > BUFFER - 16 {
            return (p, Stop::TooBig);
        }
        if end - p - 16 < caplen {
            return (p, Stop::Short);
        }
        let frac = read_u32(be, buf, p + 4) as i64;
        frames.push(Frame {
            ts: read_u32(be, buf, p) as i64 * 1_000_000 + if nano { frac / 1000 } else { frac }, // u32 seconds: no overflow
            wire_len: read_u32(be, buf, p + 12).max(caplen as u32),
            linktype,
            data: &buf[p + 16..p + 16 + caplen],
        });
        p += 16 + caplen;
    }
    (p, Stop::Full)
}

fn too_big(packets: u64) -> End {
    End::Broken {
        packets,
        message: format!("a record claims more than {} MiB: the file is corrupt here", BUFFER >> 20),
    }
}

fn cut(packets: u64) -> End {
    End::Broken { packets, message: "the file ends in the middle of a record (truncated capture)".into() }
}

/// Frames per batch from a mapped file (measured on 10 M packets: 1024,
/// 4096 and 16 384 within 5 % of each other in the reading thread's CPU
/// time; 65 536 slower in wall time, in noisier runs).
const MAPPED_BATCH: usize = 4096;

/// Bytes of the file mapped at a time: the file's pages count in the
/// process's resident size while they are mapped, so not the whole file
/// (10 M packets: 1 GB). Measured on 10 M packets: 16 and 64 MiB the same
/// within the noise, against 153 MB peak RSS without a map: +11 MB and +59 MB.
const WINDOW: usize = 16 << 20;

/// [`read_classic`] over `file` mapped `window` bytes at a time, each
/// window starting at the next record; `None` when the file cannot be
/// mapped at all (not a regular file, or a file system that refuses), so
/// the caller reads it instead. A window's pages are asked for in one call
/// (`MADV_POPULATE_READ`, Linux 5.14+; measured: 4 % less CPU time on the
/// reading thread than faulting them in, and ignored where unsupported).
///
/// The file's length is taken again before each window, so a file that
/// grows while it is read is read to its new end, as `read` would; one
/// that shrinks between windows ends the read as broken. One truncated
/// *inside* the mapped window kills the process with SIGBUS (see [`map`]):
/// the risk of every memory-mapped reader, small here because a window is
/// 16 MiB and the audit reads files that are finished (a capture still
/// being written grows, it does not shrink).
fn read_classic_mapped(
    path: &Path,
    file: &File,
    window: usize,
    on: &mut dyn FnMut(&[Frame<'_>]),
) -> Result<Option<End>, crate::Error> {
    let mut head = None;
    let (mut pos, mut packets) = (0u64, 0u64);
    loop {
        let Some(len) = mappable(file) else {
            return Ok(head
                .is_some()
                .then(|| End::Broken { packets, message: "the file is gone while it was read".into() }));
        };
        if len <= pos {
            return Ok(Some(if len == pos {
                End::Complete
            } else {
                End::Broken { packets, message: "the file shrank while it was read".into() }
            }));
        }
        let wlen = (len - pos).min(window as u64) as usize;
        let at_eof = pos + wlen as u64 == len;
        let Some(m) = map(file, pos, wlen) else {
            return Ok(head
                .is_some()
                .then(|| End::Broken { packets, message: "read error: the file could not be mapped".into() }));
        };
        let bytes: &[u8] = &m;
        let mut p = 0;
        let head = match head {
            Some(h) => h,
            None => {
                let h = classic_file_header(path, &bytes[..bytes.len().min(24)])?;
                head = Some(h);
                p = 24;
                h
            }
        };
        let mut frames = Vec::with_capacity(MAPPED_BATCH);
        loop {
            frames.clear();
            let (taken, stop) = records(&bytes[p..], head, &mut frames, MAPPED_BATCH);
            p += taken;
            if !frames.is_empty() {
                on(&frames);
                packets += frames.len() as u64;
            }
            match stop {
                Stop::Full => {}
                Stop::TooBig => return Ok(Some(too_big(packets))),
                Stop::Short if at_eof => return Ok(Some(if p == bytes.len() { End::Complete } else { cut(packets) })),
                // The next record runs on past this window: map from it.
                Stop::Short => break,
            }
        }
        if p == 0 {
            // A window is larger than any record `records` accepts.
            return Ok(Some(too_big(packets)));
        }
        pos += p as u64;
    }
}

/// [`read_classic`] through a read buffer of [`BUFFER`] bytes.
fn read_classic_buffered(path: &Path, mut file: File, on: &mut dyn FnMut(&[Frame<'_>])) -> Result<End, crate::Error> {
    let mut head = [0u8; 24];
    let got = fill(&mut file, &mut head).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
    let head = classic_file_header(path, &head[..got])?;
    let mut buf = vec![0u8; BUFFER];
    let (mut start, mut end, mut packets, mut eof) = (0usize, 0usize, 0u64, false);
    loop {
        let mut frames = Vec::with_capacity(1024);
        let (taken, stop) = records(&buf[start..end], head, &mut frames, usize::MAX);
        start += taken;
        if !frames.is_empty() {
            on(&frames);
            packets += frames.len() as u64;
        }
        drop(frames);
        if stop == Stop::TooBig {
            return Ok(too_big(packets));
        }
        if eof {
            return Ok(if start == end { End::Complete } else { cut(packets) });
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

/// The length of `file` when it can be mapped: a regular file at least a
/// header long.
fn mappable(file: &File) -> Option<u64> {
    let meta = file.metadata().ok()?;
    (meta.is_file() && meta.len() >= 24).then_some(meta.len())
}

/// `len` bytes (not 0) of `file` from `offset`, mapped read-only, their
/// pages asked for at once.
#[allow(unsafe_code)]
fn map(file: &File, offset: u64, len: usize) -> Option<memmap2::Mmap> {
    // SAFETY: the map is read-only and lives only while its window is
    // parsed; the frames handed on borrow it and cannot outlive the call.
    // What memmap2 cannot promise, and this relies on: that no one changes
    // the file under the map. A process that truncates it while a window is
    // mapped makes the next read of a page past the new end raise SIGBUS
    // (the process dies; no memory is corrupted), and one that rewrites its
    // bytes makes them change under a `&[u8]` (every read of them is bounds
    // checked against the window's fixed length, so the effect is garbage
    // frames, not an out-of-bounds access). [`read_classic_mapped`] takes
    // the length again before each window to narrow the first case.
    let m = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file) }.ok()?;
    let _ = m.advise(memmap2::Advice::PopulateRead);
    Some(m)
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

    /// The mapped reader, in windows far smaller than the file (records
    /// running across every window's end), gives the frames and the end
    /// the buffered reader gives: complete, then cut in a record's bytes.
    #[test]
    fn mapped_windows_agree_with_the_read_buffer() {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
        for i in 0..300u32 {
            let len = 14 + (i * 37) % 90;
            for v in [1_700_000_000 + i, i * 1000, len, len + i % 3] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend((0..len).map(|b| (b + i) as u8));
        }
        let dir = tempfile::tempdir().unwrap();
        let frames_of = |path: &Path, window: Option<usize>| {
            let mut seen = Vec::new();
            let mut on =
                |fs: &[Frame<'_>]| seen.extend(fs.iter().map(|x| (x.ts, x.wire_len, x.linktype, x.data.to_vec())));
            let end = match window {
                Some(w) => read_classic_mapped(path, &File::open(path).unwrap(), w, &mut on).unwrap().unwrap(),
                None => read_classic_buffered(path, File::open(path).unwrap(), &mut on).unwrap(),
            };
            (seen, end)
        };
        for (name, bytes) in [("whole.pcap", &f[..]), ("cut.pcap", &f[..f.len() - 5])] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let want = frames_of(&path, None);
            assert_eq!(want.0.len(), if name == "cut.pcap" { 299 } else { 300 });
            for w in [200, 256, 4096, 1 << 20] {
                assert_eq!(frames_of(&path, Some(w)), want, "{name}, window {w}");
            }
        }
    }

    #[test]
    fn timestamp_units() {
        assert_eq!(to_micros(1_500_000, 1_000_000), 1_500_000);
        assert_eq!(to_micros(1_500_000_000, 1_000_000_000), 1_500_000);
        assert_eq!(to_micros(u64::MAX, 1_000_000_000), (u64::MAX / 1_000_000_000) as i64 * 1_000_000 + 709_551);
    }
}
