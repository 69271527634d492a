package testbed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// IperfResult is one iperf3 TCP run, parsed from `iperf3 -J`.
type IperfResult struct {
	// BitsPerSecond is the throughput the receiver measured.
	BitsPerSecond float64
	// Retransmits are the sender's TCP retransmissions.
	Retransmits int
	// Bytes and Duration are what the receiver got, and in how long.
	Bytes    int64
	Duration time.Duration
	// SenderCPU and ReceiverCPU are iperf3's host_total and remote_total
	// CPU utilization percentages (swapped with -R, so that they still name
	// the sending and receiving side).
	SenderCPU, ReceiverCPU float64
}

// GbitPerSecond is BitsPerSecond in Gbit/s.
func (r *IperfResult) GbitPerSecond() float64 { return r.BitsPerSecond / 1e9 }

// serverReadyTimeout bounds the wait for the iperf3 server to listen.
const serverReadyTimeout = 10 * time.Second

// Iperf3 runs an iperf3 server in server, listening on a free port on every
// address of its namespace, and a client in client toward target (an address
// of server reachable from client: its Addr for the raw path, a mesh address
// for the tunnel) for dur rounded up to whole seconds (iperf3's -t), with
// extra client arguments (such as "-R", "-P", "4" or "-O", "1"). The server
// is a one-off (-1) and is killed when Iperf3 returns in any case.
func Iperf3(ctx context.Context, server, client *Host, target netip.Addr, dur time.Duration, extra ...string) (*IperfResult, error) {
	if dur <= 0 {
		return nil, fmt.Errorf("iperf3: duration %v, want > 0", dur)
	}
	port, err := server.freePort()
	if err != nil {
		return nil, fmt.Errorf("iperf3: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var serverOut bytes.Buffer
	srv := server.Command(sctx, "iperf3", "-s", "-1", "-p", strconv.Itoa(port))
	srv.Stdout, srv.Stderr = &serverOut, &serverOut
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("iperf3 server: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = srv.Wait()
		close(exited)
	}()
	defer func() {
		cancel() // kills the server if it is still running
		<-exited
	}()
	if err := waitListening(ctx, server, srv.Process.Pid, port, exited); err != nil {
		if errors.Is(err, errServerExited) {
			err = fmt.Errorf("%w: %v: %s", err, waitErr, bytes.TrimSpace(serverOut.Bytes()))
		}
		return nil, fmt.Errorf("iperf3 server: %w", err)
	}

	secs := int(math.Ceil(dur.Seconds()))
	args := append([]string{"-c", target.String(), "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs), "-J"}, extra...)
	var stderr bytes.Buffer
	cl := client.Command(ctx, "iperf3", args...)
	cl.Stderr = &stderr
	out, runErr := cl.Output()
	res, parseErr := parseIperf(out)
	if runErr != nil {
		why := parseErr // with -J, iperf3 reports its errors in the JSON
		if s := bytes.TrimSpace(stderr.Bytes()); len(s) > 0 {
			why = errors.New(string(s))
		}
		if why == nil {
			return nil, fmt.Errorf("iperf3 client: %w", runErr)
		}
		return nil, fmt.Errorf("iperf3 client: %w: %v", runErr, why)
	}
	if parseErr != nil {
		return nil, fmt.Errorf("iperf3 client: %w", parseErr)
	}
	return res, nil
}

// freePort returns a TCP port nobody listens on in the host's namespace.
// Only tests use the namespace, so it stays free until iperf3 takes it.
func (h *Host) freePort() (int, error) {
	l, err := h.Listen("tcp", ":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var errServerExited = errors.New("exited before listening")

// waitListening waits until process pid, once it is in h's namespace (the
// pid is `ip netns exec` until it execs iperf3), has a TCP socket listening
// on port. Polling /proc rather than connecting, since a one-off server
// would take a probe for its client.
func waitListening(ctx context.Context, h *Host, pid, port int, exited <-chan struct{}) error {
	const every = 20 * time.Millisecond
	tick := time.NewTicker(every)
	defer tick.Stop()
	for range int(serverReadyTimeout / every) {
		if sameNS(h.NSPath, fmt.Sprintf("/proc/%d/ns/net", pid)) && listening(pid, port) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errServerExited
		case <-tick.C:
		}
	}
	return fmt.Errorf("not listening on port %d after %v", port, serverReadyTimeout)
}

// sameNS reports whether two namespace files are the same namespace.
func sameNS(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false
	}
	x, ok1 := sa.Sys().(*syscall.Stat_t)
	y, ok2 := sb.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && x.Dev == y.Dev && x.Ino == y.Ino
}

// listening reports whether /proc/PID/net/tcp or tcp6 (the sockets of pid's
// namespace) has a socket in state LISTEN on port.
func listening(pid, port int) bool {
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			// sl local_address rem_address st ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				return true
			}
		}
	}
	return false
}

// iperfJSON is the part of `iperf3 -J` output that IperfResult needs.
type iperfJSON struct {
	Start struct {
		TestStart struct {
			Reverse int `json:"reverse"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent     iperfSum `json:"sum_sent"`
		SumReceived iperfSum `json:"sum_received"`
		CPU         struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int     `json:"retransmits"`
}

func parseIperf(out []byte) (*IperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return nil, fmt.Errorf("parse json: %w", err)
	}
	if j.Error != "" {
		return nil, fmt.Errorf("iperf3 reports: %s", j.Error)
	}
	recv := j.End.SumReceived
	if recv.Seconds <= 0 {
		return nil, errors.New("parse json: no receiver summary")
	}
	r := &IperfResult{
		BitsPerSecond: recv.BitsPerSecond,
		Retransmits:   j.End.SumSent.Retransmits,
		Bytes:         recv.Bytes,
		Duration:      time.Duration(recv.Seconds * float64(time.Second)),
		SenderCPU:     j.End.CPU.HostTotal,
		ReceiverCPU:   j.End.CPU.RemoteTotal,
	}
	if j.Start.TestStart.Reverse != 0 {
		r.SenderCPU, r.ReceiverCPU = r.ReceiverCPU, r.SenderCPU
	}
	return r, nil
}
