// Package pathbench compares, in one run, the throughput of the data paths
// between two hosts of the namespace testbed (internal/testbed), iperf3 TCP
// through the tunnels and quic-go datagrams for the naive ceiling:
//
//   - raw: the veth path, no tunnel;
//   - ref: the reference wireguard-go, built from the unpatched upstream
//     module at the version go.mod names (not third_party/wireguard-go),
//     configured with `wg` and `ip` as its users do;
//   - ours: rustynetd with the wireguard backend (the patched wireguard-go
//     behind node/filter and node/backend/wireguard);
//   - acl: ours under a one-way ACL (the sender may open connections to
//     the receiver, not the reverse), so that node/filter works on every
//     packet of the sender: it records the flows it sends and checks the
//     replies;
//   - quic: rustynetd with the quic backend;
//   - naive: not iperf3 but plain quic-go (node/backend/quic's
//     BenchmarkDatagramLoop, the naive ceiling, between raw's two hosts
//     over the veth instead of over loopback): the benchmark process opens
//     a UDP socket in each host's namespace, dials one connection with
//     quic-go's defaults plus EnableDatagrams (a new one every run, as
//     iperf3 opens a new TCP connection; the server's certificate is a
//     self-signed ed25519 one made by the benchmark, the only one the
//     client accepts), sends 1,200-byte datagrams as fast as SendDatagram
//     returns for the same warm-up and measured window as an iperf3 run,
//     and counts the datagram payload received (goodput, Gbit/s).
//
// BenchmarkPaths (root; iperf3, wg and ip) measures them in alternating
// rounds and reports each path's Gbit/s and the ratios ours/ref, ref/raw,
// ours/raw, acl/ours, quic/raw, quic/ours, quic/naive and naive/raw (each
// taken within a round), as median, min and max over the rounds, and the
// daemons' CPU seconds per GB. With RUSTYNET_PATHBENCH_BASE_DAEMON naming
// another rustynetd build (an earlier commit's, say) it adds that daemon's
// paths, base and base-acl, and the ratios ours/base, acl/base-acl and
// base/ref: a before and after in one run. With RUSTYNET_PATHBENCH_PROFILE_DIR set it then takes a CPU
// profile of both ends' daemons under iperf3 for every path whose daemons
// serve net/http/pprof (the reference, and rustynetd with
// --debug-pprof-listen), and writes each there as PATH-SIDE.pprof with its
// `go tool pprof -top` text (PATH-SIDE.top.txt). TestNaiveLoop (root)
// checks the naive path itself: a short run, no goroutine left behind, and
// a server with another certificate refused. BenchmarkSeal is the
// crypto limit: ChaCha20-Poly1305 (the AEAD wireguard-go uses) sealing
// one packet at a time on one core.
//
//	go test -v -run '^$' -bench Paths -benchtime 1x ./internal/pathbench/
//	go test -run '^$' -bench Seal ./internal/pathbench/
//
// Settings (environment): RUSTYNET_PATHBENCH_ROUNDS (default 5),
// RUSTYNET_PATHBENCH_SECONDS (each iperf3 or naive run's measured seconds,
// after a 1 s warm-up it omits; default 2), RUSTYNET_PATHBENCH_BASE_DAEMON,
// RUSTYNET_PATHBENCH_PROFILE_SECONDS (each profile's window; default 5),
// RUSTYNET_PATHBENCH_PROFILE_DIR. -v prints every run and the summary.
package pathbench
