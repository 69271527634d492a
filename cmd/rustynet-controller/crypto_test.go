package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeCryptoPolicy: a crypto policy given to serve is checked before
// anything starts: an exception without a ticket, or expiring more than
// 90 days ahead, is refused with its line (exit 2), and so is a file that
// is not there.
func TestServeCryptoPolicy(t *testing.T) {
	dir := t.TempDir()
	shipped, err := os.ReadFile("../../policies/crypto.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(shipped, []byte("\nexceptions: []\n")) {
		t.Fatal("policies/crypto.yaml has no empty exceptions list to replace")
	}
	write := func(name, exception string) string {
		p := filepath.Join(dir, name)
		data := bytes.Replace(shipped, []byte("\nexceptions: []\n"), []byte("\nexceptions:\n"+exception), 1)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	soon := time.Now().AddDate(0, 0, 30).Format(time.DateOnly)
	far := time.Now().AddDate(0, 0, 120).Format(time.DateOnly)
	for _, c := range []struct {
		file string
		want string
	}{
		{filepath.Join(dir, "missing.yaml"), "missing.yaml"},
		{write("far.yaml", "  - mode: controller-tls12\n    owner: ops@example.com\n    reason: legacy clients\n    ticket: OPS-1\n    expires: "+far+"\n"), "more than 90 days"},
		{write("noticket.yaml", "  - mode: controller-tls12\n    owner: ops@example.com\n    reason: legacy clients\n    expires: "+soon+"\n"), "exception has no ticket"},
		{write("nomode.yaml", "  - mode: node-tls11\n    owner: ops@example.com\n    reason: legacy clients\n    ticket: OPS-1\n    expires: "+soon+"\n"), "not an insecure mode of the policy"},
	} {
		_, stderr, code := ctl(t, "", "serve", "--data-dir", filepath.Join(dir, "data"), "--crypto-policy", c.file)
		if code != 2 || !strings.Contains(stderr, "--crypto-policy") || !strings.Contains(stderr, c.want) {
			t.Errorf("serve --crypto-policy %s: exit %d %q, want 2 and %q", filepath.Base(c.file), code, stderr, c.want)
		}
		if strings.HasSuffix(c.file, "far.yaml") && !strings.Contains(stderr, "far.yaml:") {
			t.Errorf("the refusal does not give the exception's line: %q", stderr)
		}
	}
}
