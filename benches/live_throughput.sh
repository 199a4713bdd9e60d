#!/usr/bin/env bash
# How fast can `kscflow live` capture without drops, on one core?
#
# Replays a generated capture (kscflow-fixtures big: 60-100-byte packets,
# ~10 % KSC traffic) with tcpreplay from a network namespace this script
# makes onto a veth pair, at increasing packet rates, while kscflow live
# (pinned to one core) captures the other end. After each run it reads
# libpcap's counters from kscflow's final JSON report. Nothing leaves the
# machine: the veth pair's far end lives in the private namespace.
#
# Root. Usage: benches/live_throughput.sh [PACKETS_PER_RUN] [RATES...]
# Example:     benches/live_throughput.sh 2000000 100000 200000 400000 max
# A rate of "max" is tcpreplay --topspeed. KSCFLOW_ARGS adds arguments to
# kscflow live (e.g. KSCFLOW_ARGS=--no-auto-filter: every packet to user space).
set -euo pipefail

n=${1:-2000000}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(50000 100000 200000 300000 400000 600000 800000)

[ "$(id -u)" = 0 ] || { echo "run as root (network namespace, capture)" >&2; exit 2; }
command -v tcpreplay >/dev/null || apt-get install -y tcpreplay >/dev/null
cd "$(dirname "$0")/.."
cargo build --workspace --release -q
ns=kscflow-tx
unplug() {
    ip netns del "$ns" 2>/dev/null || true
    ip link del veth-ksc 2>/dev/null || true
}
unplug
work=$(mktemp -d)
chmod 777 "$work"
trap 'unplug; rm -rf "$work"' EXIT

target/release/kscflow-fixtures big --packets "$n" --out "$work/big.pcap" >/dev/null 2>&1
ip netns add "$ns"
ip link add veth-ksc type veth peer name veth-tx
ip link set veth-tx netns "$ns"
ip link set veth-ksc up
ip netns exec "$ns" ip link set veth-tx up
ip netns exec "$ns" ip link set lo up

cpus=$(nproc)
kcore=$((cpus - 1))
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kscflow on core $kcore"
echo "capture: $n packets of kscflow-fixtures big"
printf '%-10s %-12s %-12s %-10s %-10s %-10s %s\n' "pps asked" "pps sent" "received" "dropped" "if_drop" "packets" "kscflow CPU busy while sending"
for rate in "${rates[@]}"; do
    # shellcheck disable=SC2086
    taskset -c "$kcore" target/release/kscflow live -i veth-ksc -o "$work/r.json" \
        --report-every 3600 --max-flows 1048576 ${KSCFLOW_ARGS:-} >/dev/null 2>"$work/log" &
    pid=$!
    for _ in $(seq 50); do grep -q "capturing on" "$work/log" 2>/dev/null && break; sleep 0.1; done
    if [ "$rate" = max ]; then speed=--topspeed; else speed=--pps=$rate; fi
    c0=$(awk '{print $14 + $15}' /proc/$pid/stat); t0=$(date +%s.%N)
    sent=$(ip netns exec "$ns" taskset -c 0 tcpreplay -i veth-tx "$speed" "$work/big.pcap" 2>&1 \
        | awk '/Rated:/ {print $(NF-1); exit}')
    sleep 0.5  # the ring drained
    c1=$(awk '{print $14 + $15}' /proc/$pid/stat); t1=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$work/r.json" "$rate" "$sent" "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = r["capture"]["drops"]
c0, c1, t0, t1, hz = (float(x) for x in sys.argv[4:9])
busy = (c1 - c0) / hz / (t1 - t0)
print(f'{sys.argv[2]:<10} {sys.argv[3]:<12} {d["received"]:<12} {d["dropped"]:<10} {d["interface_dropped"]:<10} {r["capture"]["packets"]:<10} {busy:.0%}')
EOF
done
