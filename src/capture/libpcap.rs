//! Files through libpcap (the `pcap` crate): pcap and pcapng, BPF filters.

use std::path::Path;

use pcap::{Capture, Precision};

use super::{End, Frame};

/// Reads `path` with libpcap. Opened at nanosecond precision so that both
/// µs and ns files give exact timestamps (`shared/notes/crates.md` §1.3).
pub fn read(path: &Path, filter: Option<&str>, on: &mut dyn FnMut(Frame<'_>)) -> Result<End, crate::Error> {
    let mut cap = Capture::from_file_with_precision(path, Precision::Nano).map_err(|e| crate::Error::Capture {
        path: path.to_path_buf(),
        message: explain_open_error(path, &e.to_string()),
    })?;
    if let Some(f) = filter {
        cap.filter(f, true).map_err(|e| crate::Error::Filter { filter: f.into(), message: e.to_string() })?;
    }
    let linktype = cap.get_datalink().0;
    let mut n = 0u64;
    loop {
        match cap.next_packet() {
            Ok(p) => {
                // The fraction is unsigned in the file format; libpcap hands it
                // over in a signed field, so an invalid fraction >= 2^31 ns
                // (tcpdump's timestamp_invalid_nano.pcap) must not turn negative.
                #[allow(clippy::useless_conversion)]
                let ts = super::sane_ts(
                    i64::from(p.header.ts.tv_sec)
                        .saturating_mul(1_000_000)
                        .saturating_add(i64::from(p.header.ts.tv_usec as u32) / 1000),
                );
                on(Frame { ts, wire_len: p.header.len, linktype, data: p.data });
                n += 1;
            }
            Err(pcap::Error::NoMorePackets) => return Ok(End::Complete),
            Err(e) => return Ok(End::Broken { packets: n, message: e.to_string() }),
        }
    }
}

/// libpcap's open errors are terse; say what the user can do.
pub(crate) fn explain_open_error(path: &Path, msg: &str) -> String {
    let len = std::fs::metadata(path).map(|m| m.len()).ok();
    if len == Some(0) {
        return "the file is empty (0 bytes): not a pcap or pcapng capture".into();
    }
    let mut magic = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open(path) {
        use std::io::Read;
        let _ = f.read(&mut magic);
    }
    if magic[..2] == [0x1f, 0x8b] {
        return "the file is gzip-compressed: decompress it first (gunzip -k FILE)".into();
    }
    format!("not a capture libpcap can read ({msg}); kscflow reads pcap and pcapng files")
}
