package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/internal/clitest"
	"github.com/rustynet/rustynet/node/localapi"
)

// binary is rustynet, built once for the tests that run it as a user
// does; testVersion is the version its -ldflags set, as the Makefile's do.
var binary string

const testVersion = clitest.Version

func TestMain(m *testing.M) {
	clitest.Main(m, "rustynet", &binary, nil)
}

// rustynet runs the built binary and returns its exit code, stdout and
// stderr.
func rustynet(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("rustynet %q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestCommandLine: what the binary accepts and refuses, and how it exits,
// with no daemon to talk to: a refused command line exits 2 before
// anything asks rustynetd, and says what was wrong in the user's words.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir() // no daemon: only a command that runs reaches it
	clitest.Table(t, binary, []struct {
		Name        string
		Args        []string
		Code        int
		Want, Never []string // Want in stdout or stderr; Never in neither
	}{
		{"no command", nil, 2, []string{"Available Commands:", "give a command"}, nil},
		{"unknown command", []string{"stats"}, 2, []string{`unknown command "stats"`, "Did you mean this?", "rustynet --help"}, nil},
		{"unknown flag", []string{"status", "--bogus", "--state-dir", dir}, 2, []string{"unknown flag: --bogus", "rustynet status --help"}, nil},
		{"extra argument", []string{"status", "extra", "--state-dir", dir}, 2, []string{`takes no arguments, got ["extra"]`}, nil},
		{"extra argument of ip", []string{"ip", "b", "--state-dir", dir}, 2, []string{`takes no arguments, got ["b"]`}, nil},
		{"flag of ping given to status", []string{"status", "-c", "3", "--state-dir", dir}, 2, []string{"-c is a flag of rustynet ping, not of rustynet status"}, nil},
		{"flag of status given to ip", []string{"ip", "--json", "--state-dir", dir}, 2, []string{"--json is a flag of rustynet status, not of rustynet ip"}, nil},
		{"-4 and -6", []string{"ip", "-4", "-6", "--state-dir", dir}, 2, []string{"-4 and -6 ask for one address family each"}, nil},
		{"ping without a peer", []string{"ping", "--state-dir", dir}, 2, []string{"want one PEER"}, nil},
		{"ping two peers", []string{"ping", "a", "b", "--state-dir", dir}, 2, []string{`got 2 arguments: ["a" "b"]`}, nil},
		{"count not a number", []string{"ping", "a", "-c", "abc", "--state-dir", dir}, 2, []string{`invalid value "abc" for -c/--count: want a whole number`}, []string{"strconv", "ParseInt"}},
		{"count 0", []string{"ping", "a", "-c", "0", "--state-dir", dir}, 2, []string{"invalid value 0 for -c/--count: want 1 or more"}, nil},
		{"timeout without unit", []string{"ping", "a", "--timeout", "2", "--state-dir", dir}, 2, []string{`invalid value "2" for --timeout: want a duration with its unit`}, []string{"time: ", "missing unit"}},
		{"timeout too long", []string{"ping", "a", "--timeout", "2m", "--state-dir", dir}, 2, []string{"want 1ms to 1m"}, nil},
		{"interval 0", []string{"ping", "a", "-i", "0s", "--state-dir", dir}, 2, []string{"invalid value 0s for -i/--interval"}, nil},
		{"flag value missing", []string{"ping", "a", "--state-dir"}, 2, []string{"flag needs an argument: --state-dir"}, nil},
		{"version", []string{"--version"}, 0, []string{"rustynet " + testVersion + "\n"}, nil},
		{"help", []string{"--help"}, 0, []string{"Exit status:", "2  usage error", "3  rotate-key", "status", "ping", "rotate-key", "completion"}, nil},
		{"help of status", []string{"status", "--help"}, 0, []string{"Exit status:", "offline", "--json"}, nil},
		{"help of ip", []string{"ip", "--help"}, 0, []string{"Exit status:", "-4, --ipv4", "-6, --ipv6"}, nil},
		{"help of ping", []string{"ping", "--help"}, 0, []string{"Exit status:", "ACL policy", "-c, --count", "-i, --interval", "--timeout", "--state-dir"}, nil},
		{"help of rotate-key", []string{"help", "rotate-key"}, 0, []string{"Exit status:", "3 when the key was sent"}, nil},
		{"completion bash", []string{"completion", "bash"}, 0, []string{"bash completion V2 for rustynet"}, nil},
		{"completion zsh", []string{"completion", "zsh"}, 0, []string{"#compdef rustynet"}, nil},
		{"completion fish", []string{"completion", "fish"}, 0, []string{"complete -c rustynet"}, nil},
		{"completion of an unknown shell", []string{"completion", "tcsh"}, 2, []string{`unknown command "tcsh": the commands are bash, fish, powershell, zsh`}, nil},
		{"completion without a shell", []string{"completion"}, 2, []string{"give a command: bash, fish, powershell, zsh"}, nil},
		{"no daemon", []string{"status", "--state-dir", dir}, 1, []string{"rustynetd is not running (no socket at " + dir}, []string{"--help"}},
		{"no daemon for ping", []string{"ping", "b", "--state-dir", dir}, 1, []string{"rustynetd is not running"}, nil},
	})
}

// TestStatusExitsOneWhenNotConnected: `rustynet status` prints the status
// in every state, and exits 1 and says why when the node is offline,
// logged out or degraded, with --json too.
func TestStatusExitsOneWhenNotConnected(t *testing.T) {
	for _, tc := range []struct {
		state string
		code  int
		say   string
	}{
		{localapi.StateRunning, 0, ""},
		{localapi.StateStarting, 0, ""},
		{localapi.StateRotating, 0, ""},
		{localapi.StateOffline, 1, "the node is offline: the controller https://ctl.example:8443 does not answer; the last netmap (revision 7) stays in force"},
		{localapi.StateLoggedOut, 1, "the node is logged out: the controller removed it"},
		{localapi.StateDegraded, 1, "the node is degraded: its netmap (revision 7) is not in force on the dataplane: the UAPI socket is in use"},
	} {
		st := &localapi.Status{State: tc.state, Controller: "https://ctl.example:8443", Revision: 7, Peers: []localapi.Peer{}}
		if tc.state == localapi.StateDegraded {
			st.ApplyError = "the UAPI socket is in use"
		}
		dir := serve(t, &agent{status: st})
		code, stdout, stderr := rustynet(t, "status", "--state-dir", dir)
		if code != tc.code || !strings.Contains(stdout, "state:      "+tc.state) || !strings.Contains(stderr, tc.say) ||
			(st.ApplyError != "" && !strings.Contains(stdout, "not applied: "+st.ApplyError)) {
			t.Errorf("in state %s, rustynet status = exit %d, stdout %q, stderr %q; want exit %d, the status, and %q", tc.state, code, stdout, stderr, tc.code, tc.say)
		}
		code, stdout, _ = rustynet(t, "status", "--json", "--state-dir", dir)
		var got localapi.Status
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.State != tc.state || code != tc.code {
			t.Errorf("in state %s, rustynet status --json = exit %d, %q (%v); want exit %d and the status as JSON", tc.state, code, stdout, err, tc.code)
		}
	}
}

// pinger is an agent whose Ping answers as reply says, and counts the
// echoes it was asked for.
type pinger struct {
	agent
	reply func(n int64) (*localapi.PingResult, error)
	asked atomic.Int64
}

func (p *pinger) Ping(context.Context, string, time.Duration) (*localapi.PingResult, error) {
	return p.reply(p.asked.Add(1))
}

// TestPingSummaryAndReasons: `rustynet ping` prints ping(8)'s summary,
// exits 0 when any reply came back, and when none did (or none could)
// says why from what the daemon's status says of the peer.
func TestPingSummaryAndReasons(t *testing.T) {
	now := time.Now()
	old := now.Add(-10 * time.Minute)
	ep := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:41641")}
	addr := netip.MustParsePrefix("100.64.0.7/32")
	peer := func(mod func(*localapi.Peer)) []localapi.Peer {
		p := localapi.Peer{ID: "n7", Name: "bravo", NodeKey: api.NodePublic{7}, Addresses: []netip.Prefix{addr}, Endpoints: ep, AllowOut: true, AllowIn: true, LastHandshake: &now}
		if mod != nil {
			mod(&p)
		}
		return []localapi.Peer{p}
	}
	replyMs := func(n int64) (*localapi.PingResult, error) {
		return &localapi.PingResult{Peer: "bravo", Addr: addr.Addr(), RTT: time.Duration(n) * time.Millisecond}, nil
	}
	noReply := func(int64) (*localapi.PingResult, error) {
		return nil, errors.New("no reply from bravo (100.64.0.7) within 50ms")
	}
	for _, tc := range []struct {
		name  string
		peers []localapi.Peer
		reply func(int64) (*localapi.PingResult, error)
		args  []string
		code  int
		asked int64
		want  []string
	}{
		{"replies", peer(nil), replyMs, []string{"bravo", "-c", "3"}, 0, 3, []string{
			"reply from bravo (100.64.0.7): seq=0 time=1ms", "reply from bravo (100.64.0.7): seq=2 time=3ms",
			"--- bravo ping statistics ---", "3 packets transmitted, 3 received, 0% packet loss", "rtt min/avg/max = 1.000/2.000/3.000 ms"}},
		{"by address", peer(nil), replyMs, []string{"100.64.0.7"}, 0, 1, []string{"1 packets transmitted, 1 received, 0% packet loss"}},
		{"some lost", peer(nil), func(n int64) (*localapi.PingResult, error) {
			if n == 2 {
				return noReply(n)
			}
			return replyMs(n)
		}, []string{"bravo", "-c", "3"}, 0, 3, []string{"seq=1: no reply from bravo", "3 packets transmitted, 2 received, 33.3% packet loss", "rtt min/avg/max = 1.000/2.000/3.000 ms"}},
		{"the ACL forbids it", peer(func(p *localapi.Peer) { p.AllowOut = false }), replyMs, []string{"bravo", "-c", "3"}, 1, 0,
			[]string{"cannot reach bravo: the ACL policy does not let this node open connections to it", "no echo sent"}},
		{"no endpoint", peer(func(p *localapi.Peer) { p.Endpoints, p.LastHandshake = nil, nil }), noReply, []string{"bravo", "-c", "2"}, 1, 2,
			[]string{"2 packets transmitted, 0 received, 100% packet loss", "no reply from bravo: bravo has no endpoint"}},
		{"no handshake", peer(func(p *localapi.Peer) { p.LastHandshake = nil }), noReply, []string{"bravo"}, 1, 1,
			[]string{"100% packet loss", "no handshake with bravo has completed: it does not answer at its endpoints [192.0.2.7:41641]"}},
		{"old handshake", peer(func(p *localapi.Peer) { p.LastHandshake = &old }), noReply, []string{"bravo"}, 1, 1,
			[]string{"the last handshake with bravo was 10m0s ago"}},
		{"recent handshake", peer(nil), noReply, []string{"bravo"}, 1, 1,
			[]string{"no reply from bravo: the last handshake with bravo was 0s ago, so it was up then: it may have stopped since"}},
		{"pq refused", peer(func(p *localapi.Peer) { p.PQ, p.PQReason = localapi.PQRefused, "bravo runs no post-quantum exchange" }), noReply, []string{"bravo"}, 1, 1,
			[]string{"requires post-quantum protection, which bravo cannot give (bravo runs no post-quantum exchange)"}},
		{"not in the netmap", nil, func(int64) (*localapi.PingResult, error) {
			return nil, errors.New(`no peer "zulu" in the netmap (a peer the ACL policy hides is not sent to this node)`)
		}, []string{"zulu", "-c", "3"}, 1, 1, []string{`rustynet ping: no peer "zulu" in the netmap`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pinger{agent: agent{status: &localapi.Status{State: localapi.StateRunning, Peers: tc.peers}}, reply: tc.reply}
			dir := serve(t, p)
			args := append(append([]string{"ping"}, tc.args...), "-i", "10ms", "--timeout", "50ms", "--state-dir", dir)
			code, stdout, stderr := rustynet(t, args...)
			out := stdout + stderr
			if code != tc.code {
				t.Errorf("rustynet %q exited %d, want %d; printed %q", args, code, tc.code, out)
			}
			if got := p.asked.Load(); got != tc.asked {
				t.Errorf("rustynet %q asked rustynetd for %d echoes, want %d", args, got, tc.asked)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("rustynet %q printed %q, want %q in it", args, out, w)
				}
			}
		})
	}
}
