//! Tunnels a span port delivers: the headers between an outer packet and
//! the inner one whose TCP/UDP 5-tuple is the flow. COLD: reached only from
//! a branch of the hot decoder that a plain TCP/UDP packet never takes (an
//! ethertype other than IPv4/IPv6, an IP protocol 4/41/47, a UDP destination
//! port 4789/6081/2152).
//!
//! One loop walks the layers ([`decapsulate`]); each tunnel header entered
//! counts one encapsulation, and the loop gives up past
//! [`MAX_ENCAPSULATIONS`] ([`Skip::TunnelTooDeep`]). Nothing here recurses,
//! so no input can grow the stack, and every layer consumes bytes or a level,
//! so the loop ends. A tunnel header cut short or invalid is
//! [`Skip::MalformedTunnel`]; a tunnel carrying something other than IP
//! (ARP in VXLAN, PPP LCP, a GTP echo, an MPLS pseudowire) is
//! [`Skip::NotIp`].
//!
//! How others do it, and what kscflow follows:
//! - GRE (RFC 2784, keys and sequence numbers RFC 2890; version 1 is PPTP's
//!   enhanced GRE, RFC 2637 §4.1): header length from the C/K/S (and for
//!   version 1, A) flags; the R (routing, RFC 1701) bit and versions other
//!   than 0 and 1 are refused, as Zeek's GRE analyzer does.
//! - ERSPAN (draft-foschiano-erspan-03; GRE protocol 0x88BE, 0x22EB): type I
//!   is 0x88BE without the GRE sequence bit (no ERSPAN header, Wireshark
//!   and Zeek), type II has an 8-byte header, type III a 12-byte one plus an
//!   8-byte platform-specific subheader when its O bit is set; type III's
//!   frame type 0 is Ethernet and 2 is IP (Linux `include/net/erspan.h`).
//! - VXLAN (RFC 7348 §5): UDP destination port 4789, an 8-byte header whose
//!   I flag must be set, then Ethernet. Like tcpdump and Suricata, the port
//!   decides; the other flag bits (VXLAN-GBP) are not checked.
//! - Geneve (RFC 8926 §3.4): UDP destination port 6081, version 0, 8 bytes
//!   plus 4 × the option length; the protocol type says Ethernet (0x6558)
//!   or IP.
//! - IP in IP: IPv4 protocol 4 (RFC 2003), 41 (6in4, RFC 4213), and the
//!   same next-header values in IPv6 (RFC 2473).
//! - MPLS (RFC 3032): 4-byte label stack entries up to the bottom-of-stack
//!   bit, then IPv4 or IPv6 guessed from the first nibble, as tcpdump and
//!   Zeek do (anything else, e.g. an Ethernet pseudowire's control word, is
//!   not IP).
//! - PPPoE session stage (RFC 2516 §4–5): ethertype 0x8864, version/type
//!   0x11, code 0, the length bounds the PPP frame; PPP protocol 0x0021
//!   (IPv4) or 0x0057 (IPv6) (RFC 1332, RFC 5072), with the 1-byte
//!   compressed form (RFC 1661 §6.5) and, in GRE, the optional
//!   address/control bytes 0xFF 0x03 (RFC 1662 §3.1).
//! - GTP-U (3GPP TS 29.281 §5): UDP destination port 2152, version 1,
//!   protocol type 1; sequence number, N-PDU number and next-extension
//!   type when any of E, S, PN is set; extension headers chained by their
//!   4-byte length units (length 0 is invalid); only a G-PDU (type 255)
//!   carries IP, the inner version again from its first nibble (Zeek's
//!   GTPv1 analyzer does the same).

use super::{be16, ethernet, ip_layer, link_other, Decoded, Link, Skip, Tunnel, Tunnels, MAX_ENCAPSULATIONS};

/// VXLAN's UDP port (RFC 7348 §5, IANA).
pub const VXLAN_PORT: u16 = 4789;
/// Geneve's UDP port (RFC 8926 §3.3, IANA).
pub const GENEVE_PORT: u16 = 6081;
/// GTP-U's UDP port (3GPP TS 29.281 §4.4.2).
pub const GTP_U_PORT: u16 = 2152;

/// What comes next while walking the layers of one packet.
#[derive(Clone, Copy, Debug)]
pub(super) enum Next<'a> {
    /// An Ethernet frame from its destination MAC (inside VXLAN, Geneve,
    /// GRE transparent bridging, ERSPAN).
    Ether(&'a [u8]),
    /// The bytes after an Ethernet header, and its ethertype.
    Type(u16, &'a [u8]),
    /// An IPv4 or IPv6 header (the version nibble decides).
    Ip(&'a [u8]),
    /// IP in IP: enter a tunnel, then an IP header.
    IpInIp(&'a [u8]),
    /// A GRE header (IP protocol 47).
    Gre(&'a [u8]),
    /// A UDP header to one of the tunnel ports (its destination port).
    Udp(u16, &'a [u8]),
}

/// Whether a UDP destination port is a tunnel kscflow opens.
#[inline(always)]
pub(super) fn is_tunnel_port(dport: u16) -> bool {
    // The three lie in 2152..=6081: most ports are told apart by one
    // compare of the difference (cachegrind: 5 instructions a UDP packet
    // fewer than the three compares alone).
    dport.wrapping_sub(GTP_U_PORT) <= GENEVE_PORT - GTP_U_PORT && matches!(dport, VXLAN_PORT | GENEVE_PORT | GTP_U_PORT)
}

/// The state carried down the layers.
#[derive(Clone, Copy)]
struct Ctx {
    /// The VLAN the flow is reported in: the innermost Ethernet frame's
    /// first tag (or ERSPAN's original VLAN), else the enclosing one's.
    vlan: u16,
    /// Sent to the broadcast MAC of the innermost Ethernet frame.
    l2_broadcast: bool,
    tunnels: Tunnels,
    depth: usize,
    /// An outer IP layer was a first fragment: what is inside is partial.
    cut: bool,
}

/// Walks `next` and what it holds down to the innermost TCP/UDP header.
/// `tunnels` and `depth` describe what was already entered, `vlan` the
/// enclosing frame's VLAN, `cut` whether an outer IP layer was a first
/// fragment.
#[cold]
#[inline(never)]
pub(super) fn decapsulate(next: Next<'_>, tunnels: Tunnels, depth: usize, vlan: u16, cut: bool) -> Decoded<'_> {
    let mut st = Ctx { vlan, l2_broadcast: false, tunnels, depth, cut };
    let mut next = next;
    loop {
        next = match step(next, &mut st) {
            Ok(n) => n,
            Err(d) => return d,
        };
    }
}

/// A frame whose link layer carries something other than IPv4/IPv6: an
/// MPLS stack or a PPPoE session is opened, anything else is not IP.
#[cold]
#[inline(never)]
pub(super) fn link_tunnel(link: Link, frame: &[u8]) -> Decoded<'_> {
    match link_other(link, frame) {
        Some((ethertype, rest, vlan)) => decapsulate(Next::Type(ethertype, rest), Tunnels::default(), 0, vlan, false),
        None => Decoded::Skip(Skip::NotIp),
    }
}

/// Enters one tunnel of kind `t`: counted, and refused past the bound.
#[inline]
fn enter(st: &mut Ctx, t: Tunnel) -> Result<(), Decoded<'static>> {
    st.depth += 1;
    if st.depth > MAX_ENCAPSULATIONS {
        return Err(Decoded::Skip(Skip::TunnelTooDeep));
    }
    st.tunnels = st.tunnels.with(t);
    Ok(())
}

fn skip(s: Skip) -> Decoded<'static> {
    Decoded::Skip(s)
}

/// One layer: the next one, or the end (a packet, a fragment, a skip).
fn step<'a>(next: Next<'a>, st: &mut Ctx) -> Result<Next<'a>, Decoded<'a>> {
    match next {
        Next::Ether(f) => {
            let (ethertype, off, vlan) = ethernet(f).map_err(skip)?;
            let rest = &f[off..];
            st.vlan = if vlan != 0 { vlan } else { st.vlan };
            st.l2_broadcast = f.get(..6) == Some(&[0xff; 6]);
            Ok(Next::Type(ethertype, rest))
        }
        Next::Type(ethertype, rest) => match ethertype {
            0x0800 | 0x86dd => Ok(Next::Ip(rest)),
            0x8847 | 0x8848 => {
                enter(st, Tunnel::Mpls)?;
                mpls(rest).map_err(skip)
            }
            0x8864 => {
                enter(st, Tunnel::Pppoe)?;
                pppoe(rest).map_err(skip)
            }
            _ => Err(skip(Skip::NotIp)),
        },
        Next::IpInIp(ip) => {
            enter(st, Tunnel::IpInIp)?;
            Ok(Next::Ip(ip))
        }
        Next::Ip(ip) => {
            let mut inner = None;
            match (ip_layer(ip, st.vlan, st.cut, &mut inner), inner) {
                (_, Some((n, cut))) => {
                    st.cut |= cut;
                    // A new IP layer: a broadcast MAC outside it says
                    // nothing about what it carries.
                    st.l2_broadcast = false;
                    Ok(n)
                }
                (Decoded::Packet(mut p), None) => {
                    p.vlan = st.vlan;
                    p.l2_broadcast = st.l2_broadcast;
                    p.tunnels = st.tunnels;
                    Err(Decoded::Packet(p))
                }
                (d, None) => Err(d),
            }
        }
        Next::Gre(g) => {
            let (proto, seq, rest) = gre(g).map_err(skip)?;
            match proto {
                0x88be | 0x22eb => {
                    enter(st, Tunnel::Erspan)?;
                    erspan(proto, seq, rest, &mut st.vlan).map_err(skip)
                }
                _ => {
                    enter(st, Tunnel::Gre)?;
                    match proto {
                        0x0800 | 0x86dd => Ok(Next::Ip(rest)),
                        0x6558 => Ok(Next::Ether(rest)),
                        0x880b => ppp(rest, true).map_err(skip),
                        0x8847 | 0x8848 => {
                            enter(st, Tunnel::Mpls)?;
                            mpls(rest).map_err(skip)
                        }
                        _ => Err(skip(Skip::NotIp)),
                    }
                }
            }
        }
        Next::Udp(dport, udp) => {
            let payload = udp.get(8..).ok_or(skip(Skip::MalformedTunnel))?;
            match dport {
                VXLAN_PORT => {
                    enter(st, Tunnel::Vxlan)?;
                    vxlan(payload).map_err(skip)
                }
                GENEVE_PORT => {
                    enter(st, Tunnel::Geneve)?;
                    geneve(payload).map_err(skip)
                }
                _ => {
                    enter(st, Tunnel::GtpU)?;
                    gtp_u(payload).map_err(skip)
                }
            }
        }
    }
}

/// A GRE header (RFC 2784 §2, RFC 2890 §2; version 1: RFC 2637 §4.1):
/// the protocol type, whether a sequence number was present, and the
/// payload.
fn gre(g: &[u8]) -> Result<(u16, bool, &[u8]), Skip> {
    if g.len() < 4 {
        return Err(Skip::MalformedTunnel);
    }
    let (f0, f1) = (g[0], g[1]);
    let (c, r, k, s) = (f0 & 0x80 != 0, f0 & 0x40 != 0, f0 & 0x20 != 0, f0 & 0x10 != 0);
    let proto = be16(g, 2);
    let len = match f1 & 0x07 {
        // RFC 2784: checksum (with the reserved offset word) and RFC 2890
        // key and sequence number, each 4 bytes, in that order. The RFC 1701
        // routing bit (source route entries) is refused.
        0 if !r => 4 + 4 * (c as usize + k as usize + s as usize),
        // Enhanced GRE (PPTP): key (payload length + call id) always,
        // sequence and acknowledgment (A, bit 0x80 of the second byte)
        // optional; it carries PPP only.
        1 if !c && !r && k && proto == 0x880b => 8 + 4 * (s as usize + (f1 & 0x80 != 0) as usize),
        _ => return Err(Skip::MalformedTunnel),
    };
    let rest = g.get(len..).ok_or(Skip::MalformedTunnel)?;
    Ok((proto, s, rest))
}

/// The ERSPAN header after a GRE header of protocol `proto`. The VLAN field
/// (the mirrored frame's original VLAN) becomes the flow's VLAN unless the
/// mirrored frame still carries a tag of its own.
fn erspan<'a>(proto: u16, seq: bool, b: &'a [u8], vlan: &mut u16) -> Result<Next<'a>, Skip> {
    if proto == 0x88be && !seq {
        // Type I: no ERSPAN header.
        return Ok(Next::Ether(b));
    }
    let (want, len) = if proto == 0x88be { (1, 8) } else { (2, 12) };
    if b.len() < len {
        return Err(Skip::MalformedTunnel);
    }
    if b[0] >> 4 != want {
        return Err(Skip::MalformedTunnel);
    }
    *vlan = be16(b, 0) & 0x0fff;
    if proto == 0x88be {
        return Ok(Next::Ether(&b[8..]));
    }
    // Type III: SGT(16) P(1) FT(5) HW ID(6) D(1) Gra(2) O(1) in bytes 8-11.
    let frame_type = (b[10] >> 2) & 0x1f;
    let len = if b[11] & 0x01 != 0 { 12 + 8 } else { 12 };
    let rest = b.get(len..).ok_or(Skip::MalformedTunnel)?;
    match frame_type {
        0 => Ok(Next::Ether(rest)),
        2 => Ok(Next::Ip(rest)),
        _ => Err(Skip::NotIp),
    }
}

/// An MPLS label stack (RFC 3032 §2.1) and the IP packet under it.
fn mpls(mut b: &[u8]) -> Result<Next<'_>, Skip> {
    loop {
        if b.len() < 4 {
            return Err(Skip::MalformedTunnel);
        }
        let bottom = b[2] & 0x01 != 0;
        b = &b[4..];
        if bottom {
            break;
        }
    }
    match b.first().map(|v| v >> 4) {
        Some(4 | 6) => Ok(Next::Ip(b)),
        Some(_) => Err(Skip::NotIp),
        None => Err(Skip::MalformedTunnel),
    }
}

/// A PPPoE session header (RFC 2516 §4) and its PPP frame.
fn pppoe(b: &[u8]) -> Result<Next<'_>, Skip> {
    if b.len() < 6 {
        return Err(Skip::MalformedTunnel);
    }
    if b[0] != 0x11 || b[1] != 0x00 {
        return Err(Skip::MalformedTunnel);
    }
    let len = be16(b, 4) as usize;
    let payload = &b[6..];
    // The length bounds the PPP frame (Ethernet padding follows it); a
    // capture cut before its end keeps what it has.
    ppp(&payload[..len.min(payload.len())], false)
}

/// A PPP frame's protocol (RFC 1661 §2; 1-byte compressed form §6.5), with
/// the HDLC-like address and control bytes (RFC 1662 §3.1) when `framed`
/// and present.
fn ppp(b: &[u8], framed: bool) -> Result<Next<'_>, Skip> {
    let b = match b {
        [0xff, 0x03, rest @ ..] if framed => rest,
        // 0xFF begins the address field, never a protocol number.
        [0xff, ..] if framed => return Err(Skip::MalformedTunnel),
        _ => b,
    };
    let (proto, rest) = match b.first() {
        None => return Err(Skip::MalformedTunnel),
        // An odd first byte is a whole (compressed) protocol number.
        Some(&p) if p & 1 == 1 => (p as u16, &b[1..]),
        Some(_) if b.len() >= 2 => (be16(b, 0), &b[2..]),
        Some(_) => return Err(Skip::MalformedTunnel),
    };
    match proto {
        0x0021 | 0x0057 => Ok(Next::Ip(rest)),
        _ => Err(Skip::NotIp),
    }
}

/// Whether a datagram to a tunnel port starts like that tunnel's header
/// (as far as it was captured). One that does not is plain UDP — a service
/// that happens to use the port, a scan, a flood — and is a flow like any
/// other, not a damaged tunnel: Zeek likewise leaves the UDP connection
/// alone when its VXLAN analyzer refuses the payload. VXLAN: the I flag
/// (RFC 7348 §5); Geneve: version 0 (RFC 8926 §3.4); GTP-U: version 1,
/// protocol type GTP (TS 29.281 §5.1). A header cut before its first byte
/// is still taken as the tunnel (then `malformed_tunnel`).
#[inline]
pub(super) fn udp_tunnel_header(dport: u16, payload: Option<&[u8]>) -> bool {
    let Some(&b) = payload.and_then(|p| p.first()) else { return true };
    match dport {
        VXLAN_PORT => b & 0x08 != 0,
        GENEVE_PORT => b >> 6 == 0,
        _ => b >> 5 == 1 && b & 0x10 != 0,
    }
}

/// A VXLAN header (RFC 7348 §5) and its Ethernet frame.
fn vxlan(b: &[u8]) -> Result<Next<'_>, Skip> {
    if b.len() < 8 || b[0] & 0x08 == 0 {
        return Err(Skip::MalformedTunnel);
    }
    Ok(Next::Ether(&b[8..]))
}

/// A Geneve header with its options (RFC 8926 §3.4) and what it carries.
fn geneve(b: &[u8]) -> Result<Next<'_>, Skip> {
    if b.len() < 8 || b[0] >> 6 != 0 {
        return Err(Skip::MalformedTunnel);
    }
    let len = 8 + 4 * (b[0] & 0x3f) as usize;
    let rest = b.get(len..).ok_or(Skip::MalformedTunnel)?;
    match be16(b, 2) {
        0x6558 => Ok(Next::Ether(rest)),
        0x0800 | 0x86dd => Ok(Next::Ip(rest)),
        _ => Err(Skip::NotIp),
    }
}

/// A GTPv1-U header (3GPP TS 29.281 §5.1, §5.2) and the IP packet of a G-PDU.
fn gtp_u(b: &[u8]) -> Result<Next<'_>, Skip> {
    if b.len() < 8 {
        return Err(Skip::MalformedTunnel);
    }
    let flags = b[0];
    // Version 1, protocol type 1 (GTP, not GTP').
    if flags >> 5 != 1 || flags & 0x10 == 0 {
        return Err(Skip::MalformedTunnel);
    }
    // The length counts the bytes after the first 8, options included.
    let end = (8 + be16(b, 2) as usize).min(b.len());
    let mut off = 8;
    if flags & 0x07 != 0 {
        // Sequence number (2), N-PDU number (1), next extension type (1).
        if b.len() < 12 {
            return Err(Skip::MalformedTunnel);
        }
        let mut next_ext = b[11];
        off = 12;
        if flags & 0x04 == 0 {
            next_ext = 0;
        }
        while next_ext != 0 {
            // Length in 4-byte units, the contents, then the next type.
            let units = *b.get(off).ok_or(Skip::MalformedTunnel)? as usize;
            if units == 0 {
                return Err(Skip::MalformedTunnel);
            }
            let after = off + 4 * units;
            next_ext = *b.get(after - 1).ok_or(Skip::MalformedTunnel)?;
            off = after;
        }
    }
    if b[1] != 0xff {
        // Echo, error indication, end marker …: no user packet.
        return Err(Skip::NotIp);
    }
    let inner = b.get(off..end.max(off)).ok_or(Skip::MalformedTunnel)?;
    match inner.first().map(|v| v >> 4) {
        Some(4 | 6) => Ok(Next::Ip(inner)),
        Some(_) => Err(Skip::NotIp),
        None => Err(Skip::MalformedTunnel),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode, quick_addresses, Decoded, Link, Packet, Skip, Tunnel, TunnelCounts, Tunnels};
    use crate::rules::Transport;
    use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder};
    use std::net::IpAddr;

    const V6A: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x21];
    const V6B: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

    /// The inner packet every test looks for: an agent's SYN to 13000.
    fn inner_ip4() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 20], [10, 0, 0, 10], 64)
            .tcp(49152, 13000, 7, 64240)
            .syn()
            .write(&mut v, &[])
            .unwrap();
        v
    }

    fn inner_ip6() -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv6(V6A, V6B, 64).tcp(49153, 13000, 7, 64240).syn().write(&mut v, &[]).unwrap();
        v
    }

    /// The same SYN in an Ethernet frame, with an 802.1Q tag when `vlan`.
    fn inner_eth(vlan: Option<u16>, dst_mac: [u8; 6]) -> Vec<u8> {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0x20], dst_mac);
        match vlan {
            Some(id) => b
                .single_vlan(id.try_into().unwrap())
                .ipv4([10, 0, 1, 20], [10, 0, 0, 10], 64)
                .tcp(49152, 13000, 7, 64240)
                .syn()
                .write(&mut v, &[])
                .unwrap(),
            None => {
                b.ipv4([10, 0, 1, 20], [10, 0, 0, 10], 64).tcp(49152, 13000, 7, 64240).syn().write(&mut v, &[]).unwrap()
            }
        }
        v
    }

    fn eth(ethertype: u16, payload: &[u8], dst: [u8; 6]) -> Vec<u8> {
        let mut v = Ethernet2Header { source: [2, 0, 0, 0, 0, 1], destination: dst, ether_type: EtherType(ethertype) }
            .to_bytes()
            .to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// An IPv4 header (192.0.2.1 → 192.0.2.100) of protocol `proto` around `payload`.
    fn ip4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let h = Ipv4Header::new(payload.len() as u16, 64, IpNumber(proto), [192, 0, 2, 1], [192, 0, 2, 100]).unwrap();
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn ip6(next: u8, payload: &[u8]) -> Vec<u8> {
        let h = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: payload.len() as u16,
            next_header: IpNumber(next),
            hop_limit: 64,
            source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        };
        let mut v = h.to_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// Ethernet / IPv4 / UDP (sport 51000) to `dport` around `payload`.
    fn udp4(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 100], 64)
            .udp(51000, dport)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn gre(flags: u8, ver: u8, proto: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![flags, ver];
        v.extend_from_slice(&proto.to_be_bytes());
        let words = (flags & 0x80 != 0) as usize + (flags & 0x20 != 0) as usize + (flags & 0x10 != 0) as usize;
        for i in 0..words {
            v.extend_from_slice(&[0, 0, 0, i as u8 + 1]);
        }
        v.extend_from_slice(payload);
        v
    }

    fn erspan2(vlan: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = (0x1000 | vlan).to_be_bytes().to_vec(); // version 1
        v.extend_from_slice(&[0x00, 0x2a, 0, 0, 0, 0]); // COS/En/T 0, session 42, index 0
        v.extend_from_slice(payload);
        gre(0x10, 0, 0x88be, &v)
    }

    fn erspan3(vlan: u16, frame_type: u8, subheader: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = (0x2000 | vlan).to_be_bytes().to_vec(); // version 2 (type III)
        v.extend_from_slice(&[0x00, 0x2a, 0x11, 0x22, 0x33, 0x44, 0, 0]); // session, timestamp, SGT
        v.push(frame_type << 2);
        v.push(subheader as u8);
        if subheader {
            v.extend_from_slice(&[0x0c, 0, 0, 0, 0, 0, 0, 1]);
        }
        v.extend_from_slice(payload);
        gre(0x10, 0, 0x22eb, &v)
    }

    fn vxlan_hdr(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x08, 0, 0, 0, 0, 0x12, 0x34, 0]; // I flag, VNI 0x1234
        v.extend_from_slice(payload);
        v
    }

    fn geneve_hdr(proto: u16, opt_words: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![opt_words, 0];
        v.extend_from_slice(&proto.to_be_bytes());
        v.extend_from_slice(&[0, 0x12, 0x34, 0]);
        for _ in 0..opt_words {
            v.extend_from_slice(&[0x01, 0x02, 0x80, 0x00]);
        }
        v.extend_from_slice(payload);
        v
    }

    /// GTPv1-U G-PDU: `flags` beyond version/PT, then `opts` (the 4
    /// optional bytes and extension headers as given).
    fn gtp(flags: u8, msg: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x30 | flags, msg];
        v.extend_from_slice(&((opts.len() + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 1]); // TEID
        v.extend_from_slice(opts);
        v.extend_from_slice(payload);
        v
    }

    fn mpls(labels: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            let bottom = (i + 1 == labels.len()) as u32;
            v.extend_from_slice(&((l << 12) | (bottom << 8) | 64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    fn pppoe(proto: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x11, 0x00, 0x00, 0x07];
        v.extend_from_slice(&((proto.len() + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(proto);
        v.extend_from_slice(payload);
        v
    }

    fn packet(d: Decoded<'_>) -> Packet<'_> {
        match d {
            Decoded::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The inner SYN was found, through exactly `kinds`.
    fn assert_inner<'a>(f: &'a [u8], kinds: &[Tunnel]) -> Packet<'a> {
        let p = packet(decode(Link::Ethernet, f));
        assert_eq!((p.dport, p.transport, p.flags), (13000, Transport::Tcp, 0x02));
        assert!(p.dst == "10.0.0.10".parse::<IpAddr>().unwrap() || p.dst == IpAddr::from(V6B), "{p:?}");
        let want = kinds.iter().fold(Tunnels::default(), |t, k| t.with(*k));
        assert_eq!(p.tunnels, want, "{p:?}");
        assert_eq!(quick_addresses(Link::Ethernet, f), None, "a tunnel's flow has the inner addresses");
        p
    }

    #[test]
    fn gre_every_flag_combination() {
        // RFC 2784 checksum, RFC 2890 key and sequence number: 8 headers.
        for flags in 0..8u8 {
            let flags = ((flags & 4) << 5) | ((flags & 2) << 4) | ((flags & 1) << 4);
            let f = eth(0x0800, &ip4(47, &gre(flags, 0, 0x0800, &inner_ip4())), [2; 6]);
            assert_inner(&f, &[Tunnel::Gre]);
            let f = eth(0x0800, &ip4(47, &gre(flags, 0, 0x86dd, &inner_ip6())), [2; 6]);
            assert_inner(&f, &[Tunnel::Gre]);
        }
        // GRE over IPv6 too.
        let f = eth(0x86dd, &ip6(47, &gre(0x20, 0, 0x0800, &inner_ip4())), [2; 6]);
        assert_inner(&f, &[Tunnel::Gre]);
    }

    #[test]
    fn gre_refuses_routing_and_unknown_versions() {
        for (flags, ver) in [(0x40, 0), (0x00, 2), (0x00, 7)] {
            let f = eth(0x0800, &ip4(47, &gre(flags, ver, 0x0800, &inner_ip4())), [2; 6]);
            assert!(matches!(decode(Link::Ethernet, &f), Decoded::Skip(Skip::MalformedTunnel)), "{flags:x} {ver}");
        }
        // Cisco metadata (0x8909), keepalives …: GRE, but not IP.
        let f = eth(0x0800, &ip4(47, &gre(0, 0, 0x8909, &inner_ip4())), [2; 6]);
        assert!(matches!(decode(Link::Ethernet, &f), Decoded::Skip(Skip::NotIp)));
    }

    #[test]
    fn gre_transparent_ethernet_bridging_takes_the_inner_vlan() {
        let f = eth(0x0800, &ip4(47, &gre(0x20, 0, 0x6558, &inner_eth(Some(30), [2; 6]))), [2; 6]);
        let p = assert_inner(&f, &[Tunnel::Gre]);
        assert_eq!(p.vlan, 30);
    }

    #[test]
    fn enhanced_gre_carries_ppp() {
        // PPTP (RFC 2637): K always, S and A optional; PPP with and without
        // address/control and with a compressed protocol field.
        for (s_a, ppp) in [(0x00u8, &[0xff, 0x03, 0x00, 0x21][..]), (0x80, &[0x21][..]), (0x00, &[0x00, 0x21][..])] {
            let mut g = vec![0x30, 0x01 | s_a, 0x88, 0x0b, 0x00, 0x40, 0x00, 0x01, 0, 0, 0, 9];
            if s_a != 0 {
                g.extend_from_slice(&[0, 0, 0, 8]);
            }
            g.extend_from_slice(ppp);
            g.extend_from_slice(&inner_ip4());
            assert_inner(&eth(0x0800, &ip4(47, &g), [2; 6]), &[Tunnel::Gre]);
        }
        // LCP (0xc021) is not IP.
        let mut g = vec![0x20, 0x01, 0x88, 0x0b, 0x00, 0x40, 0x00, 0x01, 0xc0, 0x21];
        g.extend_from_slice(&inner_ip4());
        assert!(matches!(decode(Link::Ethernet, &eth(0x0800, &ip4(47, &g), [2; 6])), Decoded::Skip(Skip::NotIp)));
    }

    #[test]
    fn erspan_types_one_two_three() {
        // Type I: 0x88BE without the sequence bit, Ethernet right after GRE.
        let f = eth(0x0800, &ip4(47, &gre(0, 0, 0x88be, &inner_eth(None, [2; 6]))), [2; 6]);
        assert_eq!(assert_inner(&f, &[Tunnel::Erspan]).vlan, 0);
        // Type II: the header's VLAN when the mirrored frame has no tag; the
        // frame's own tag when it has one.
        let f = eth(0x0800, &ip4(47, &erspan2(10, &inner_eth(None, [2; 6]))), [2; 6]);
        assert_eq!(assert_inner(&f, &[Tunnel::Erspan]).vlan, 10);
        let f = eth(0x0800, &ip4(47, &erspan2(10, &inner_eth(Some(20), [2; 6]))), [2; 6]);
        assert_eq!(assert_inner(&f, &[Tunnel::Erspan]).vlan, 20);
        // Type III, with and without the platform-specific subheader.
        for sub in [false, true] {
            let f = eth(0x0800, &ip4(47, &erspan3(11, 0, sub, &inner_eth(None, [2; 6]))), [2; 6]);
            assert_eq!(assert_inner(&f, &[Tunnel::Erspan]).vlan, 11);
        }
        // Type III frame type 2: an IP packet.
        let f = eth(0x0800, &ip4(47, &erspan3(12, 2, false, &inner_ip4())), [2; 6]);
        assert_eq!(assert_inner(&f, &[Tunnel::Erspan]).vlan, 12);
        // A wrong version is malformed; an unknown frame type is not IP.
        let mut bad = erspan2(10, &inner_eth(None, [2; 6]));
        bad[8] = 0x20;
        assert!(matches!(
            decode(Link::Ethernet, &eth(0x0800, &ip4(47, &bad), [2; 6])),
            Decoded::Skip(Skip::MalformedTunnel)
        ));
        let f = eth(0x0800, &ip4(47, &erspan3(12, 5, false, &inner_ip4())), [2; 6]);
        assert!(matches!(decode(Link::Ethernet, &f), Decoded::Skip(Skip::NotIp)));
    }

    #[test]
    fn vxlan_and_geneve() {
        let f = udp4(4789, &vxlan_hdr(&inner_eth(Some(40), [2; 6])));
        let p = assert_inner(&f, &[Tunnel::Vxlan]);
        assert_eq!(p.vlan, 40, "the inner frame's VLAN (the VNI is not a VLAN)");
        // Without the I flag: not VXLAN, plain UDP to 4789.
        let mut bad = vxlan_hdr(&inner_eth(None, [2; 6]));
        bad[0] = 0;
        let f = udp4(4789, &bad);
        assert_eq!(packet(decode(Link::Ethernet, &f)).tunnels, Tunnels::default());
        // Geneve with 0 and 3 words of options, carrying Ethernet or IP.
        for words in [0, 3] {
            assert_inner(&udp4(6081, &geneve_hdr(0x6558, words, &inner_eth(None, [2; 6]))), &[Tunnel::Geneve]);
            assert_inner(&udp4(6081, &geneve_hdr(0x86dd, words, &inner_ip6())), &[Tunnel::Geneve]);
        }
        let mut bad = geneve_hdr(0x6558, 0, &inner_eth(None, [2; 6]));
        bad[0] = 0x40; // version 1: not Geneve as RFC 8926 defines it, plain UDP
        let f = udp4(6081, &bad);
        assert_eq!(packet(decode(Link::Ethernet, &f)).tunnels, Tunnels::default());
        // ARP in VXLAN: not IP.
        let arp = eth(0x0806, &[0; 28], [0xff; 6]);
        assert!(matches!(decode(Link::Ethernet, &udp4(4789, &vxlan_hdr(&arp))), Decoded::Skip(Skip::NotIp)));
    }

    #[test]
    fn only_the_destination_port_makes_a_udp_tunnel() {
        // A datagram *from* 4789 (the VXLAN source port is entropy, RFC 7348
        // §5) to 13000 is an ordinary flow.
        let mut v = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 1, 20], [10, 0, 0, 10], 64)
            .udp(4789, 13000)
            .write(&mut v, &[0x08; 20])
            .unwrap();
        let p = packet(decode(Link::Ethernet, &v));
        assert_eq!((p.sport, p.dport, p.tunnels), (4789, 13000, Tunnels::default()));
        assert!(quick_addresses(Link::Ethernet, &v).is_some());
    }

    /// A datagram to a tunnel port whose payload does not start like the
    /// tunnel (a scan, another service) is plain UDP, not a damaged tunnel.
    #[test]
    fn a_tunnel_port_without_the_tunnel_header_is_plain_udp() {
        use super::{GENEVE_PORT, GTP_U_PORT, VXLAN_PORT};
        for (port, first) in [(VXLAN_PORT, 0x00u8), (GENEVE_PORT, 0xc0), (GTP_U_PORT, 0x10)] {
            let f = udp4(port, &[first; 40]);
            let p = packet(decode(Link::Ethernet, &f));
            assert_eq!((p.dport, p.tunnels), (port, Tunnels::default()), "port {port}");
        }
        // With the header's first byte right it is the tunnel, and a bad one.
        assert!(matches!(
            decode(Link::Ethernet, &udp4(VXLAN_PORT, &[0x08, 0, 0])),
            Decoded::Skip(Skip::MalformedTunnel)
        ));
    }

    #[test]
    fn inner_broadcast_counts_outer_does_not() {
        let f = udp4(4789, &vxlan_hdr(&inner_eth(None, [0xff; 6])));
        assert!(packet(decode(Link::Ethernet, &f)).l2_broadcast);
        let f = eth(0x0800, &ip4(47, &gre(0, 0, 0x0800, &inner_ip4())), [0xff; 6]);
        assert!(!packet(decode(Link::Ethernet, &f)).l2_broadcast);
    }

    #[test]
    fn ip_in_ip_every_combination() {
        assert_inner(&eth(0x0800, &ip4(4, &inner_ip4()), [2; 6]), &[Tunnel::IpInIp]);
        assert_inner(&eth(0x0800, &ip4(41, &inner_ip6()), [2; 6]), &[Tunnel::IpInIp]);
        assert_inner(&eth(0x86dd, &ip6(4, &inner_ip4()), [2; 6]), &[Tunnel::IpInIp]);
        assert_inner(&eth(0x86dd, &ip6(41, &inner_ip6()), [2; 6]), &[Tunnel::IpInIp]);
        // Raw IP link type too.
        let f = ip4(4, &inner_ip4());
        assert_eq!(packet(decode(Link::RawIp, &f)).dport, 13000);
        assert_eq!(quick_addresses(Link::RawIp, &f), None);
    }

    #[test]
    fn mpls_stacks() {
        assert_inner(&eth(0x8847, &mpls(&[100], &inner_ip4()), [2; 6]), &[Tunnel::Mpls]);
        assert_inner(&eth(0x8847, &mpls(&[100, 200, 300], &inner_ip6()), [2; 6]), &[Tunnel::Mpls]);
        assert_inner(&eth(0x8848, &mpls(&[16], &inner_ip4()), [2; 6]), &[Tunnel::Mpls]);
        // Behind a VLAN tag, and in GRE (RFC 4023).
        let mut f = eth(0x8100, &[0x00, 0x05, 0x88, 0x47], [2; 6]);
        f.extend_from_slice(&mpls(&[100], &inner_ip4()));
        assert_eq!(assert_inner(&f, &[Tunnel::Mpls]).vlan, 5);
        let f = eth(0x0800, &ip4(47, &gre(0, 0, 0x8847, &mpls(&[7], &inner_ip4()))), [2; 6]);
        assert_inner(&f, &[Tunnel::Gre, Tunnel::Mpls]);
        // A pseudowire control word (first nibble 0) is not IP.
        let mut pw = vec![0, 0, 0, 0];
        pw.extend_from_slice(&inner_eth(None, [2; 6]));
        assert!(matches!(decode(Link::Ethernet, &eth(0x8847, &mpls(&[100], &pw), [2; 6])), Decoded::Skip(Skip::NotIp)));
    }

    #[test]
    fn pppoe_sessions() {
        let f = eth(0x8864, &pppoe(&[0x00, 0x21], &inner_ip4()), [2; 6]);
        assert_inner(&f, &[Tunnel::Pppoe]);
        let f = eth(0x8864, &pppoe(&[0x00, 0x57], &inner_ip6()), [2; 6]);
        assert_inner(&f, &[Tunnel::Pppoe]);
        // Ethernet padding after the PPPoE length is not read.
        let mut f = eth(0x8864, &pppoe(&[0x00, 0x21], &inner_ip4()), [2; 6]);
        f.extend_from_slice(&[0xee; 20]);
        assert_eq!(packet(decode(Link::Ethernet, &f)).payload.len(), 0);
        // LCP is not IP; discovery (0x8863) neither; a wrong version is malformed.
        let f = eth(0x8864, &pppoe(&[0xc0, 0x21], &[1, 1, 0, 4]), [2; 6]);
        assert!(matches!(decode(Link::Ethernet, &f), Decoded::Skip(Skip::NotIp)));
        let f = eth(0x8863, &pppoe(&[0x00, 0x21], &inner_ip4()), [2; 6]);
        assert!(matches!(decode(Link::Ethernet, &f), Decoded::Skip(Skip::NotIp)));
        let mut bad = pppoe(&[0x00, 0x21], &inner_ip4());
        bad[0] = 0x21;
        assert!(matches!(decode(Link::Ethernet, &eth(0x8864, &bad, [2; 6])), Decoded::Skip(Skip::MalformedTunnel)));
        // Over a Linux cooked capture.
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x88, 0x64];
        sll.extend_from_slice(&pppoe(&[0x00, 0x21], &inner_ip4()));
        assert_eq!(packet(decode(Link::LinuxSll, &sll)).dport, 13000);
    }

    #[test]
    fn gtp_u_optional_fields_and_extensions() {
        assert_inner(&udp4(2152, &gtp(0, 0xff, &[], &inner_ip4())), &[Tunnel::GtpU]);
        // S: sequence number, N-PDU number, next extension type 0.
        assert_inner(&udp4(2152, &gtp(0x02, 0xff, &[0, 1, 0, 0], &inner_ip6())), &[Tunnel::GtpU]);
        // E: a PDU session container (0x85, 1 unit) then a 2-unit one.
        let opts = [0, 0, 0, 0x85, 1, 0x10, 0x01, 0x40, 2, 1, 2, 3, 4, 5, 6, 0];
        assert_inner(&udp4(2152, &gtp(0x04, 0xff, &opts, &inner_ip4())), &[Tunnel::GtpU]);
        // An extension header of length 0 is malformed.
        let opts = [0, 0, 0, 0x85, 0, 0, 0, 0];
        assert!(matches!(
            decode(Link::Ethernet, &udp4(2152, &gtp(0x04, 0xff, &opts, &inner_ip4()))),
            Decoded::Skip(Skip::MalformedTunnel)
        ));
        // Echo request: no user packet. Version 2 (GTPv2-C): not GTP-U, plain UDP.
        assert!(matches!(decode(Link::Ethernet, &udp4(2152, &gtp(0, 1, &[], &[]))), Decoded::Skip(Skip::NotIp)));
        let mut v2 = gtp(0, 0xff, &[], &inner_ip4());
        v2[0] = 0x48;
        let f = udp4(2152, &v2);
        assert_eq!(packet(decode(Link::Ethernet, &f)).tunnels, Tunnels::default());
    }

    #[test]
    fn a_span_sees_nested_tunnels() {
        // VXLAN seen through ERSPAN: the inner frame's VLAN, both kinds.
        let vx = udp4(4789, &vxlan_hdr(&inner_eth(Some(7), [2; 6])));
        let f = eth(0x0800, &ip4(47, &erspan2(99, &vx)), [2; 6]);
        let p = assert_inner(&f, &[Tunnel::Erspan, Tunnel::Vxlan]);
        assert_eq!(p.vlan, 7);
        let mut c = TunnelCounts::default();
        c.count(p.tunnels);
        c.count(Tunnels::default());
        assert_eq!((c.get(Tunnel::Erspan), c.get(Tunnel::Vxlan), c.get(Tunnel::Gre)), (1, 1, 0));
    }

    /// `n` IPv4-in-IPv4 headers around the SYN.
    fn nested(n: usize) -> Vec<u8> {
        let mut p = inner_ip4();
        for _ in 0..n {
            p = ip4(4, &p);
        }
        p
    }

    #[test]
    fn nesting_is_bounded() {
        // Four tunnels are read, a fifth is a counted skip.
        let deepest = nested(super::MAX_ENCAPSULATIONS);
        assert_eq!(packet(decode(Link::RawIp, &deepest)).dport, 13000);
        assert!(matches!(
            decode(Link::RawIp, &nested(super::MAX_ENCAPSULATIONS + 1)),
            Decoded::Skip(Skip::TunnelTooDeep)
        ));
        // A recursion bomb (3000 levels, 60 kB) is refused after the bound,
        // without recursion.
        assert!(matches!(decode(Link::RawIp, &nested(3000)), Decoded::Skip(Skip::TunnelTooDeep)));
        // GRE in GRE in GRE …: same bound.
        let mut g = inner_ip4();
        for _ in 0..6 {
            g = ip4(47, &gre(0, 0, 0x0800, &g));
        }
        assert!(matches!(decode(Link::RawIp, &g), Decoded::Skip(Skip::TunnelTooDeep)));
        // A long MPLS label stack is one level, read in a loop.
        let labels: Vec<u32> = (16..4000).collect();
        assert_inner(&eth(0x8847, &mpls(&labels, &inner_ip4()), [2; 6]), &[Tunnel::Mpls]);
    }

    #[test]
    fn outer_first_fragment_is_opened_later_ones_are_not() {
        // GRE in a first fragment (MF set): the inner SYN is found; its
        // payload is what is here; the outer fragment is not remembered
        // (the later ones carry no inner header and would be sharded by the
        // outer addresses).
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 20], [10, 0, 0, 10], 64)
            .tcp(49152, 13000, 7, 64240)
            .write(&mut v, &[0x16; 100])
            .unwrap();
        let mut f = ip4(47, &gre(0, 0, 0x0800, &v[..60]));
        f[6] = 0x20; // MF
        let p = packet(decode(Link::RawIp, &f));
        assert_eq!((p.dport, p.payload_len, p.frag), (13000, 20, None));
        let mut later = ip4(47, &v[60..]);
        later[7] = 8; // offset 64
        assert!(matches!(decode(Link::RawIp, &later), Decoded::Skip(Skip::NotTcpUdp)));
    }

    /// Each tunnel: the frame, where its tunnel header starts and ends.
    fn samples() -> Vec<(&'static str, Vec<u8>, usize, usize)> {
        let o4 = 14 + 20; // outer Ethernet + IPv4
        let u = o4 + 8; // + UDP
        let erspan3_sub = erspan3(11, 0, true, &inner_eth(None, [2; 6]));
        let gtp_ext = gtp(0x06, 0xff, &[0, 5, 0, 0x85, 1, 0x10, 0x01, 0], &inner_ip4());
        let pptp = {
            let mut g =
                vec![0x30, 0x81, 0x88, 0x0b, 0x00, 0x40, 0x00, 0x01, 0, 0, 0, 9, 0, 0, 0, 8, 0xff, 0x03, 0x00, 0x21];
            g.extend_from_slice(&inner_ip4());
            g
        };
        vec![
            ("gre", eth(0x0800, &ip4(47, &gre(0xb0, 0, 0x0800, &inner_ip4())), [2; 6]), o4, o4 + 16),
            ("pptp", eth(0x0800, &ip4(47, &pptp), [2; 6]), o4, o4 + 20),
            ("erspan2", eth(0x0800, &ip4(47, &erspan2(10, &inner_eth(None, [2; 6]))), [2; 6]), o4, o4 + 16),
            ("erspan3", eth(0x0800, &ip4(47, &erspan3_sub), [2; 6]), o4, o4 + 8 + 20),
            ("vxlan", udp4(4789, &vxlan_hdr(&inner_eth(None, [2; 6]))), o4 + 4, u + 8),
            ("geneve", udp4(6081, &geneve_hdr(0x6558, 2, &inner_eth(None, [2; 6]))), o4 + 4, u + 16),
            ("gtp", udp4(2152, &gtp_ext), o4 + 4, u + 16),
            ("ipip", eth(0x0800, &ip4(4, &inner_ip4()), [2; 6]), o4, o4),
            ("mpls", eth(0x8847, &mpls(&[1, 2], &inner_ip6()), [2; 6]), 14, 22),
            ("pppoe", eth(0x8864, &pppoe(&[0x00, 0x21], &inner_ip4()), [2; 6]), 14, 22),
        ]
    }

    #[test]
    fn truncation_at_every_byte_is_a_counted_skip() {
        for (name, f, hdr_start, hdr_end) in samples() {
            // Where the inner TCP ports end: the inner packet's last 20
            // bytes are its TCP header (the SYN has no payload).
            let ports_end = f.len() - 20 + 4;
            for cut in 0..f.len() {
                let d = decode(Link::Ethernet, &f[..cut]);
                let _ = quick_addresses(Link::Ethernet, &f[..cut]);
                if (hdr_start..hdr_end).contains(&cut) {
                    assert!(matches!(d, Decoded::Skip(Skip::MalformedTunnel)), "{name} cut at {cut}: {d:?}");
                } else if cut < ports_end {
                    assert!(matches!(d, Decoded::Skip(_)), "{name} cut at {cut}: {d:?}");
                } else {
                    assert_eq!(packet(d).dport, 13000, "{name} cut at {cut}");
                }
            }
            assert_eq!(packet(decode(Link::Ethernet, &f)).dport, 13000, "{name}");
        }
    }

    #[test]
    fn tunnel_garbage_never_panics() {
        // Random bytes behind every tunnel header kind.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for (_, f, hdr_start, _) in samples() {
            for _ in 0..2_000 {
                let mut g = f.clone();
                for b in g[hdr_start..].iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x.is_multiple_of(4) {
                        *b = x as u8;
                    }
                }
                let _ = decode(Link::Ethernet, &g);
                let _ = quick_addresses(Link::Ethernet, &g);
            }
        }
    }
}
