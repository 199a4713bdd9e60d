#!/usr/bin/env python3
"""Seed inputs for the fuzz targets, from the repository's own fixtures.

    python3 fuzz/make_seeds.py OUT_DIR      # writes OUT_DIR/TARGET/*

decode:          byte 0 picks the link type (index into kscflow_fuzz::LINKS),
                 then up to 6 consecutive frames of a fixture joined by "--8<".
tls_hello:       TCP payloads of the fixtures that start with a TLS handshake.
capture_file:    each fixture cut after its first 24 records (pcap and
                 pcapng), and fixtures/broken/* whole.
rules_toml:      rules/ksc-14.2.toml.
inventory_toml:  fixtures/*.inventory.toml.
"""
import glob, os, struct, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1]
SEL = {1: 0, 113: 1, 276: 2, 101: 3, 228: 3, 229: 3, 12: 3, 14: 3, 0: 4, 108: 4}


def classic(data):
    """(linktype, [(record_start, record_end, frame)]) of a classic pcap."""
    magic = data[:4]
    e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    lt = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
    recs, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        end = off + 16 + incl
        if end > len(data):
            break
        recs.append((off, end, data[off + 16:end]))
        off = end
    return lt, recs


def pcapng(data):
    """(linktype of the first interface, [(block_start, block_end, frame)])."""
    lts, recs, off = [], [], 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack("<II", data[off:off + 8])
        if blen < 12 or off + blen > len(data):
            break
        if btype == 1:
            lts.append(struct.unpack("<H", data[off + 8:off + 10])[0])
        elif btype == 6:
            caplen = struct.unpack("<I", data[off + 20:off + 24])[0]
            recs.append((off, off + blen, data[off + 28:off + 28 + caplen]))
        off += blen
    return (lts[0] if lts else 1), recs


def put(target, name, blob):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


captures = sorted(glob.glob(os.path.join(ROOT, "fixtures", "*.pcap*")))
for path in captures:
    data = open(path, "rb").read()
    base = os.path.basename(path)
    ng = data[:4] == b"\x0a\x0d\x0d\x0a"
    lt, recs = pcapng(data) if ng else classic(data)
    frames = [r[2] for r in recs]
    sel = SEL.get(lt, 0)
    for i in range(0, min(len(frames), 120), 6):
        put("decode", f"{base}-{i:03}", bytes([sel]) + b"--8<".join(frames[i:i + 6]))
    for i, fr in enumerate(frames):
        j = fr.find(b"\x16\x03")
        if j >= 0 and j + 5 < len(fr) and fr[j + 5] == 1:
            put("tls_hello", f"{base}-{i:04}", fr[j:])
    cut = recs[23][1] if len(recs) > 24 else len(data)
    put("capture_file", base, data[:cut])
for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "broken", "*.pcap*"))):
    put("capture_file", "broken-" + os.path.basename(path), open(path, "rb").read())
put("rules_toml", "ksc-14.2.toml", open(os.path.join(ROOT, "rules", "ksc-14.2.toml"), "rb").read())
for path in sorted(glob.glob(os.path.join(ROOT, "fixtures", "*.inventory.toml")) +
                   glob.glob(os.path.join(ROOT, "fixtures", "broken", "*.inventory.toml"))):
    put("inventory_toml", os.path.basename(path), open(path, "rb").read())
