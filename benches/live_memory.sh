#!/usr/bin/env bash
# Does `kscflow live`'s memory stop growing once its limits are reached?
# (issue 3 item 4: "memory after a day of traffic is what it was after an hour")
#
# Generates a capture with kscflow-fixtures big (--flood: lone SYNs and UDP
# datagrams from random sources, so nearly every flood packet is a new flow
# and many are a new conversation) and replays it in a loop with tcpreplay
# --unique-ip (every loop shifts the source and destination addresses: new
# conversations, new servers, forever) at a steady rate, while kscflow live
# captures with --max-flows and --max-conversations. Every 10 s it samples
# kscflow's VmRSS / VmHWM / RssAnon (/proc/PID/status) and the counters of
# the report kscflow rewrites every 10 s (capture.flow_table,
# capture.conversation_table, capture.drops) into a TSV, one per pair of
# limits, then prints RSS at 1, 2, 5, 10 min and at the end, and how much it
# grew after the limits were reached.
#
# Both ends of the veth pair live in private network namespaces with no
# address and no route: nothing replayed can reach any other host or the
# machine's own stack.
#
# Root. Usage: benches/live_memory.sh [SECONDS_PER_RUN] [PPS] [FLOWS:CONVERSATIONS...]
# Example:     benches/live_memory.sh 600 100000 65536:32768 262144:131072   (the defaults)
#              benches/live_memory.sh --summary /tmp/live_memory/*.tsv        (figures again)
# Environment: OUT (TSVs, logs and final reports; /tmp/live_memory), SEED,
#   PACKETS (capture size, 2000000), FLOOD (per mille, 500),
#   KSCFLOW_BIN_DIR (take kscflow and kscflow-fixtures from there instead of
#   building; the build is `nice -n 19 cargo build --release --workspace`
#   into $CARGO_TARGET_DIR or target/), KSCFLOW_ARGS (more arguments to live).
# Also kept in OUT: kscflow's stderr, tcpreplay's output, the final report
# (gzip) and /proc/PID/smaps just before the end of each run.
# TSV columns: t_s rss_kib hwm_kib anon_kib sent_pkts packets received dropped
#   if_dropped peak_flows timed_out evicted hellos_not_reassembled
#   peak_conversations folded_conversations members_not_tracked
#   conversations folded_groups  (counters as of kscflow's last report, <= 10 s old)
set -euo pipefail

# The figures of one TSV: RSS at 1, 2, 5, 10 … min and at the end, and how
# RSS and its high-water mark moved once the limits were reached.
summarize() { # tsv
    python3 - "$1" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
num = lambda r, k: int(r[k] or 0)
mib = lambda r, k="rss_kib": num(r, k) / 1024
t = lambda r: int(r["t_s"])
print(sys.argv[1])
sent = (num(rows[-1], "sent_pkts") - num(rows[0], "sent_pkts")) / max(1, t(rows[-1]) - t(rows[0]))
print(f"replayed {sent:,.0f} packets/s on average (sent on the veth), {num(rows[-1], 'received'):,} received by libpcap")
print(f'{"at":>6} {"RSS MiB":>8} {"HWM MiB":>8} {"anon MiB":>8} {"packets":>11} {"dropped":>8} {"evicted":>11} {"folded":>11} {"not_tracked":>11}')
shown = []
for label, m in [("1 min", 1), ("2 min", 2), ("5 min", 5), ("10 min", 10), ("15 min", 15), ("30 min", 30), ("60 min", 60), ("end", None)]:
    r = rows[-1] if m is None else next((r for r in rows if t(r) >= 60 * m), None)
    if r is None or (m is None and shown and shown[-1] is r):
        continue
    shown.append(r)
    print(f'{label:>6} {mib(r):8.1f} {mib(r, "hwm_kib"):8.1f} {mib(r, "anon_kib"):8.1f} {num(r, "packets"):11,} '
          f'{num(r, "dropped") + num(r, "if_dropped"):8,} {num(r, "evicted"):11,} {num(r, "folded_conversations"):11,} '
          f'{num(r, "members_not_tracked"):11,}')
# the limits are reached when flows are evicted and conversations folded
full = next((r for r in rows if num(r, "evicted") > 0 and num(r, "folded_conversations") > 0), None)
if not full:
    print("limits not reached: no evictions or no folding")
    sys.exit()
after = [r for r in rows if t(r) >= t(full) + 60]
if after:
    print(f"limits reached by {t(full)} s; from {t(after[0])} s on RSS between {min(map(mib, after)):.1f} and "
          f"{max(map(mib, after)):.1f} MiB, high-water mark {mib(after[0], 'hwm_kib'):.1f} -> {mib(after[-1], 'hwm_kib'):.1f} MiB")
    steps = [(t(b), mib(b, "hwm_kib") - mib(a, "hwm_kib")) for a, b in zip(after, after[1:]) if mib(b, "hwm_kib") - mib(a, "hwm_kib") >= 4]
    for when, d in steps:
        print(f"  high-water mark +{d:.1f} MiB at {when} s")
EOF
}

if [ "${1:-}" = --summary ]; then
    shift
    for f in "$@"; do summarize "$f"; echo; done
    exit 0
fi

secs=${1:-600}
pps=${2:-100000}
shift 2 || shift $# || true
limits=("$@")
[ ${#limits[@]} -gt 0 ] || limits=(65536:32768 262144:131072)
out=${OUT:-/tmp/live_memory}
seed=${SEED:-7}
packets=${PACKETS:-2000000}
flood=${FLOOD:-500}

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, capture)" >&2; exit 2; }
command -v tcpreplay >/dev/null || apt-get install -y tcpreplay >/dev/null
cd "$(dirname "$0")/.."
if [ -n "${KSCFLOW_BIN_DIR:-}" ]; then
    bin=$KSCFLOW_BIN_DIR
else
    nice -n 19 cargo build --release --workspace -q
    bin=${CARGO_TARGET_DIR:-target}/release
fi
bin=$(cd "$bin" && pwd)

rx=kscmem-rx tx=kscmem-tx
rxif=veth-kscm txif=veth-kscm-tx
pids=()
unplug() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$rx" 2>/dev/null || true
    ip netns del "$tx" 2>/dev/null || true
}
unplug
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"
trap 'unplug; rm -rf "$work"' EXIT

echo "generating: kscflow-fixtures big --packets $packets --flood $flood --seed $seed"
"$bin/kscflow-fixtures" big --packets "$packets" --flood "$flood" --seed "$seed" \
    --out "$work/big.pcap" --inventory "$work/inventory.toml" 2>&1 | tail -1
chmod 644 "$work/inventory.toml"

ip netns add "$rx"
ip netns add "$tx"
ip link add "$rxif" netns "$rx" type veth peer name "$txif" netns "$tx"
ip -n "$rx" link set "$rxif" up
ip -n "$tx" link set "$txif" up

cpus=$(nproc)
kcore=$((cpus - 1))
loops=$((secs * pps / packets + 2))
echo "machine: $cpus cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r); kscflow on core $kcore, tcpreplay on core 0"
echo "replay: $pps packets/s for $secs s per run (tcpreplay --loop=$loops --unique-ip)"

# VmRSS, VmHWM and RssAnon of PID, in KiB, tab-separated.
memory() { awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} /^RssAnon:/ {a=$2} END {print r "\t" h "\t" a}' "/proc/$1/status"; }
# One TSV row: seconds since start, memory, packets sent, the report's counters.
sample() { # t memory report
    local sent
    sent=$(ip netns exec "$tx" cat "/sys/class/net/$txif/statistics/tx_packets")
    python3 - "$3" "$1" "$2" "$sent" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    r = {}
c = r.get("capture", {})
d = c.get("drops") or {}
f = c.get("flow_table", {})
v = c.get("conversation_table", {})
s = r.get("summary", {})
row = [sys.argv[2], *sys.argv[3].split("\t"), sys.argv[4], c.get("packets", ""),
       d.get("received", ""), d.get("dropped", ""), d.get("interface_dropped", ""),
       f.get("peak_flows", ""), f.get("timed_out", ""), f.get("evicted", ""), f.get("hellos_not_reassembled", ""),
       v.get("peak_conversations", ""), v.get("folded_conversations", ""), v.get("members_not_tracked", ""),
       s.get("conversations", ""), s.get("folded_groups", 0 if s else "")]
print("\t".join(str(x) for x in row))
EOF
}

for lim in "${limits[@]}"; do
    mf=${lim%%:*} mc=${lim##*:}
    tsv="$out/rss_flows${mf}_conv${mc}.tsv"
    run="$work/run-$mf"
    mkdir -p "$run"
    chmod 777 "$run"  # kscflow writes its report as nobody
    echo
    echo "== --max-flows $mf --max-conversations $mc -> $tsv"
    # shellcheck disable=SC2086
    ip netns exec "$rx" taskset -c "$kcore" "$bin/kscflow" live -i "$rxif" \
        --inventory "$work/inventory.toml" --max-flows "$mf" --max-conversations "$mc" \
        -o "$run/report.json" --report-every 10 ${KSCFLOW_ARGS:-} >/dev/null 2>"$out/kscflow_flows$mf.log" &
    kpid=$!  # ip netns exec execs: this is kscflow
    pids=("$kpid")
    for _ in $(seq 50); do grep -q "capturing on" "$out/kscflow_flows$mf.log" 2>/dev/null && break; sleep 0.1; done
    ip netns exec "$tx" taskset -c 0 tcpreplay -i "$txif" --pps="$pps" --loop="$loops" --unique-ip \
        "$work/big.pcap" >"$out/tcpreplay_flows$mf.log" 2>&1 &
    tpid=$!
    pids+=("$tpid")
    printf 't_s\trss_kib\thwm_kib\tanon_kib\tsent_pkts\tpackets\treceived\tdropped\tif_dropped\tpeak_flows\ttimed_out\tevicted\thellos_not_reassembled\tpeak_conversations\tfolded_conversations\tmembers_not_tracked\tconversations\tfolded_groups\n' >"$tsv"
    t0=$(date +%s)
    next=10
    while :; do
        now=$(date +%s)
        [ $((now - t0)) -ge "$secs" ] && break
        if [ $((now - t0)) -ge "$next" ]; then
            sample "$((now - t0))" "$(memory "$kpid")" "$run/report.json" >>"$tsv"
            tail -1 "$tsv" | awk -F'\t' '{printf "  %4ss  RSS %7.1f MiB  HWM %7.1f MiB  received %s dropped %s  evicted %s folded %s\n", $1, $2/1024, $3/1024, $7, $8, $12, $15}'
            next=$((next + 10))
        fi
        sleep 1
    done
    kill "$tpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
    sleep 1
    end=$(($(date +%s) - t0))
    st=$(memory "$kpid")
    cp "/proc/$kpid/smaps" "$out/smaps_flows$mf.txt"  # which mapping holds what, at the end
    kill -TERM "$kpid"
    wait "$kpid" || true
    pids=()
    # the final report (everything seen), with the RSS just before SIGTERM
    sample "$end" "$st" "$run/report.json" >>"$tsv"
    gzip -c "$run/report.json" >"$out/report_flows$mf.json.gz"
    summarize "$tsv"
done
