//! Packet sources: the only module that reads capture files and
//! interfaces ([`live`]). Each source hands frames — timestamp, lengths, bytes, link
//! type — to a callback, and says how it ended: at the end, or broken at
//! some packet with a message (a truncated capture still yields everything
//! before the damage).
//!
//! Two readers of files:
//! - [`libpcap`]: the `pcap` crate over libpcap; reads pcap and pcapng and
//!   applies BPF filters. It is the reference and the path for `--filter`.
//! - [`fast`]: pure Rust, no per-packet FFI: classic pcap parsed in place
//!   in a memory map of the file (a read buffer for what cannot be
//!   mapped), pcapng through `pcap-parser` over a buffered file, with
//!   interfaces of different link types.

pub mod fast;
pub mod libpcap;
pub mod live;

use std::path::Path;

use crate::flow::Ts;

/// Timestamps are kept within ±2^60 µs (±36,000 years) of the epoch, so
/// that no timeout or duration arithmetic can overflow on a forged one.
pub const TS_LIMIT: crate::flow::Ts = 1 << 60;

/// Clamps a capture timestamp to [`TS_LIMIT`].
#[inline]
pub fn sane_ts(ts: crate::flow::Ts) -> crate::flow::Ts {
    ts.clamp(-TS_LIMIT, TS_LIMIT)
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Ts,
    /// Length on the wire (may exceed `data.len()` when cut by the snap length).
    pub wire_len: u32,
    /// LINKTYPE_ value of the frame's interface.
    pub linktype: i32,
    pub data: &'a [u8],
}

/// How a source stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Read to the end.
    Complete,
    /// Stopped by damage after `packets` good packets.
    Broken { packets: u64, message: String },
}

/// Which file reader to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reader {
    /// The fast reader, or libpcap when a BPF filter is asked for.
    #[default]
    Auto,
    Libpcap,
    Fast,
}

/// Reads one file to the end, handing frames to `on` in batches: slices of
/// the file's bytes where the fast reader reads classic pcap (no copy, and
/// the caller can look ahead), else one frame at a time.
pub fn read_file_batches(
    path: &Path,
    reader: Reader,
    filter: Option<&str>,
    on: &mut dyn FnMut(&[Frame<'_>]),
) -> Result<End, crate::Error> {
    match (reader, filter) {
        (Reader::Fast | Reader::Auto, None) if fast::is_classic_pcap(path) => fast::read_classic(path, on),
        _ => read_file(path, reader, filter, &mut |f| on(std::slice::from_ref(&f))),
    }
}

/// Reads one file to the end, calling `on` per frame. `filter` is a BPF
/// expression (tcpdump syntax). Errors are for files that cannot be read
/// at all; damage after the start is an [`End::Broken`].
pub fn read_file(
    path: &Path,
    reader: Reader,
    filter: Option<&str>,
    on: &mut dyn FnMut(Frame<'_>),
) -> Result<End, crate::Error> {
    match (reader, filter) {
        (Reader::Libpcap, _) | (Reader::Auto, Some(_)) => libpcap::read(path, filter, on),
        (Reader::Fast, Some(f)) => Err(crate::Error::Filter {
            filter: f.into(),
            message: "BPF filters need the libpcap reader; drop --reader fast".into(),
        }),
        (Reader::Fast, None) | (Reader::Auto, None) => fast::read(path, on),
    }
}
