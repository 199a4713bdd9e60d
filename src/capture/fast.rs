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

/// A classic pcap whose version is below 2.4.
fn is_old_pcap(path: &Path) -> bool {
    use std::io::Read;
    let mut h = [0u8; 8];
    let Ok(mut f) = File::open(path) else { return false };
    if f.read_exact(&mut h).is_err() {
        return false;
    }
    let (major, minor) = match h[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => {
            (u16::from_le_bytes([h[4], h[5]]), u16::from_le_bytes([h[6], h[7]]))
        }
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => {
            (u16::from_be_bytes([h[4], h[5]]), u16::from_be_bytes([h[6], h[7]]))
        }
        _ => return false,
    };
    (major, minor) < (2, 4)
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
    use super::to_micros;

    #[test]
    fn timestamp_units() {
        assert_eq!(to_micros(1_500_000, 1_000_000), 1_500_000);
        assert_eq!(to_micros(1_500_000_000, 1_000_000_000), 1_500_000);
        assert_eq!(to_micros(u64::MAX, 1_000_000_000), (u64::MAX / 1_000_000_000) as i64 * 1_000_000 + 709_551);
    }
}
