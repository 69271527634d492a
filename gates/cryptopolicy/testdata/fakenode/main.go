// Command fakenode stands in for rustynetd in the crypto-policy gate's
// tests: it takes rustynetd's flags and, until SIGTERM, dials the
// controller's TLS port every 100 ms with the configuration
// CRYPTOPOLICY_FAKE asks for:
//
//	tls12      TLS 1.2 allowed (offered alongside TLS 1.3)
//	classical  TLS 1.3, offering only X25519
//
// and otherwise as the real node does (TLS 1.3, Go's default groups).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakenode:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("rustynetd", flag.ContinueOnError)
	fs.Bool("netstack", false, "")
	fs.String("metrics-listen", "", "")
	fs.String("state-dir", "", "")
	fs.String("hostname", "", "")
	fs.String("auth-key", "", "")
	controller := fs.String("controller", "", "")
	caFile := fs.String("controller-ca", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	u, err := url.Parse(*controller)
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	switch os.Getenv("CRYPTOPOLICY_FAKE") {
	case "tls12":
		conf.MinVersion = tls.VersionTLS12
	case "classical":
		conf.CurvePreferences = []tls.CurveID{tls.X25519}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: conf}
	for {
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err == nil {
			c.Close()
		} else {
			fmt.Fprintln(os.Stderr, "fakenode: dial:", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
