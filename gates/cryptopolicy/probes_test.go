package cryptopolicy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rustynet/rustynet/policies"
)

// TestProbeControllerFakes: a controller that accepts TLS 1.2, honours a
// lapsed exception, offers only X25519 or presents another certificate
// fails the check that says so, and only that one; the fake configured as
// the real controller is passes.
func TestProbeControllerFakes(t *testing.T) {
	bin := build(t, "./testdata/fakecontroller")
	now := time.Now()
	lapsed := "TLS 1.2 with RUSTYNET_INSECURE=controller-tls12@" + now.Add(-24*time.Hour).Format(time.DateOnly) + " under a crypto policy that grants it for 3 days: accepted"
	ungranted := "TLS 1.2 with RUSTYNET_INSECURE=controller-tls12@" + now.Add(48*time.Hour).Format(time.DateOnly) + " under the built-in crypto policy, which grants no exception: accepted"
	for _, c := range []struct {
		mode string
		fail []string
	}{
		{"", nil},
		{"tls12", []string{"TLS 1.2 by default: accepted", ungranted, lapsed}},
		{"lapsed", []string{ungranted, lapsed}},
		{"ungranted", []string{ungranted}},
		{"hybridonly", []string{"key exchange with a client offering only X25519 on " + now.UTC().Format(time.DateOnly) + ": refused"}},
		{"classical", []string{"key exchange with a client offering X25519MLKEM768 and X25519: X25519 (want X25519MLKEM768)"}},
		{"p384", []string{"server certificate key: ECDSA P-384"}},
	} {
		t.Run("mode="+c.mode, func(t *testing.T) {
			t.Setenv("CRYPTOPOLICY_FAKE", c.mode)
			rep := testReport(t)
			if err := probeController(context.Background(), rep, t.TempDir(), bin, root+"/"+PolicyFile, shippedPolicy(t), now, now); err != nil {
				t.Fatal(err)
			}
			wantFailures(t, rep, c.fail...)
		})
	}
}

// TestProbeNodeClientFakes: a node client that allows TLS 1.2, or offers
// only the classical X25519, fails the checks that say so; the fake
// configured as the real client is passes.
func TestProbeNodeClientFakes(t *testing.T) {
	bin := build(t, "./testdata/fakenode")
	for _, c := range []struct {
		mode string
		fail []string
	}{
		{"", nil},
		{"tls12", []string{"against a server offering only TLS 1.2, the node completed 3 of 3 handshakes (TLS 1.2, TLS 1.2, TLS 1.2)", "it offered TLS 1.2"}},
		{"classical", []string{"X25519MLKEM768 in 0 of 3 ClientHellos", "negotiated with a TLS 1.3 server that prefers it in 0 of 3 handshakes"}},
	} {
		t.Run("mode="+c.mode, func(t *testing.T) {
			t.Setenv("CRYPTOPOLICY_FAKE", c.mode)
			rep := testReport(t)
			if err := probeNodeClient(context.Background(), rep, t.TempDir(), bin); err != nil {
				t.Fatal(err)
			}
			wantFailures(t, rep, c.fail...)
		})
	}
}

// TestProbesCouldNotRun: a daemon that never serves, or never connects, is
// an error (the probe could not judge), not a finding.
func TestProbesCouldNotRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := testReport(t)
	if err := probeController(ctx, rep, t.TempDir(), "/bin/false", root+"/"+PolicyFile, shippedPolicy(t), time.Now(), time.Now()); err == nil {
		t.Error("probeController(/bin/false) = nil, want an error")
	}
	if err := probeNodeClient(ctx, rep, t.TempDir(), "/bin/false"); err == nil {
		t.Error("probeNodeClient(/bin/false) = nil, want an error")
	}
	if len(rep.findings) != 0 {
		t.Errorf("findings from probes that could not run: %+v", rep.findings)
	}
}

// TestRealBinaries: the controller and the node as built today, and the
// QUIC backend's pin, pass every check.
func TestRealBinaries(t *testing.T) {
	t.Run("controller", func(t *testing.T) {
		bin := build(t, root+"/cmd/rustynet-controller")
		rep := testReport(t)
		if err := probeController(context.Background(), rep, t.TempDir(), bin, root+"/"+PolicyFile, shippedPolicy(t), time.Now(), time.Now()); err != nil {
			t.Fatal(err)
		}
		wantFailures(t, rep)
		if len(rep.findings) != 7 {
			t.Errorf("%d findings, want 7: %+v", len(rep.findings), rep.findings)
		}
		// Judged as of x25519-tls-kex's removal (a what-if run with
		// --effective-time), today's controller blocks: it still serves
		// clients that offer only X25519.
		pol := shippedPolicy(t)
		a, ok := pol.Algorithm(classicalKex)
		if !ok || a.RemovedOn().IsZero() {
			t.Fatalf("the policy has no removal date for %s", classicalKex)
		}
		removal := a.RemovedOn()
		rep = testReport(t)
		if err := probeController(context.Background(), rep, t.TempDir(), bin, root+"/"+PolicyFile, pol, removal, time.Now()); err != nil {
			t.Fatal(err)
		}
		wantFailures(t, rep, "key exchange with a client offering only X25519 on "+removal.Format(time.DateOnly)+": accepted (want refused: x25519-tls-kex is removed from "+removal.Format(time.DateOnly)+")")
	})
	t.Run("node", func(t *testing.T) {
		bin := build(t, root+"/cmd/rustynetd")
		rep := testReport(t)
		if err := probeNodeClient(context.Background(), rep, t.TempDir(), bin); err != nil {
			t.Fatal(err)
		}
		wantFailures(t, rep)
		if len(rep.findings) != 4 {
			t.Errorf("%d findings, want 4: %+v", len(rep.findings), rep.findings)
		}
	})
	t.Run("quic-pin", func(t *testing.T) {
		rep := testReport(t)
		if err := probeQUICPin(context.Background(), rep, root); err != nil {
			t.Fatal(err)
		}
		wantFailures(t, rep)
		if len(rep.findings) != len(pinTests) {
			t.Errorf("%d findings, want %d: %+v", len(rep.findings), len(pinTests), rep.findings)
		}
	})
}

// TestJudgePin: each pin test must have run and passed; a failed, skipped
// or missing one fails the check, and tests that did not build are an
// error.
func TestJudgePin(t *testing.T) {
	ev := func(action, test, output string) string {
		return `{"Action":"` + action + `","Package":"p","Test":"` + test + `","Output":` + quote(output) + "}\n"
	}
	pass := ev("run", "TestClassicalRefused", "") + ev("output", "TestClassicalRefused/dialing_us", "    quic_test.go:655: X25519 only: refused\n") +
		ev("pass", "TestClassicalRefused/dialing_us", "") + ev("pass", "TestClassicalRefused", "") +
		ev("run", "TestCheckState", "") + ev("pass", "TestCheckState", "")
	for _, c := range []struct {
		name string
		out  string
		fail []string
	}{
		{"both pass", pass, nil},
		{"one fails", ev("output", "TestCheckState", "    quic_test.go:721: checkState(version 0x304, X25519) = nil, want an error\n") +
			ev("fail", "TestCheckState", "") + ev("pass", "TestClassicalRefused", ""),
			[]string{"TestCheckState failed, so the pin is broken (checkState, run inside every handshake and on every established connection, refuses TLS 1.2 and every key exchange but X25519MLKEM768): quic_test.go:721: checkState(version 0x304, X25519) = nil, want an error"}},
		{"a subtest fails", ev("fail", "TestClassicalRefused/dialed_by_us", "") + ev("fail", "TestClassicalRefused", "") + ev("pass", "TestCheckState", ""),
			[]string{"TestClassicalRefused failed"}},
		{"one skipped", ev("skip", "TestClassicalRefused", "") + ev("pass", "TestCheckState", ""), []string{"TestClassicalRefused was skipped"}},
		{"one renamed", ev("pass", "TestClassicalRefusedRenamed", "") + ev("pass", "TestCheckState", ""), []string{"TestClassicalRefused did not run"}},
		{"none ran", `{"Action":"output","Package":"p","Output":"testing: warning: no tests to run\n"}` + "\n" + `{"Action":"pass","Package":"p"}` + "\n",
			[]string{"TestClassicalRefused did not run", "TestCheckState did not run"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := testReport(t)
			if err := judgePin(rep, []byte(c.out), nil); err != nil {
				t.Fatal(err)
			}
			wantFailures(t, rep, c.fail...)
		})
	}
	buildFail := `{"ImportPath":"p [p.test]","Action":"build-output","Output":"quic.go:1: syntax error\n"}` + "\n" +
		`{"ImportPath":"p [p.test]","Action":"build-fail"}` + "\n" + `{"Action":"fail","Package":"p","FailedBuild":"p [p.test]"}` + "\n"
	rep := testReport(t)
	err := judgePin(rep, []byte(buildFail), errors.New("exit status 1"))
	if err == nil || len(rep.findings) != 0 {
		t.Errorf("judgePin(a build failure) = %v with findings %+v, want an error and no findings", err, rep.findings)
	}
}

func quote(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch r {
		case '"', '\\':
			b = append(b, '\\', byte(r))
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}

// shippedPolicy is the tree's crypto policy.
func shippedPolicy(t *testing.T) *policies.Crypto {
	t.Helper()
	pol, err := policies.LoadCrypto(root + "/" + PolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
