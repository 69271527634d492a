// Command fakecontroller stands in for rustynet-controller in the
// crypto-policy gate's tests: `fakecontroller serve --data-dir DIR --listen
// ADDR --metrics-listen ADDR` writes DIR/tls/ca.pem, logs the controller's
// "controller serving ... listen=ADDR" line, writes its --ready-file as the
// controller does, and completes TLS handshakes
// with a configuration weakened as CRYPTOPOLICY_FAKE says:
//
//	tls12      accepts TLS 1.2 always
//	lapsed     accepts TLS 1.2 with any controller-tls12 exception, lapsed or not
//	ungranted  accepts TLS 1.2 with an exception in force, granted by the
//	           crypto policy (--crypto-policy) or not
//	classical  offers only X25519
//	hybridonly offers X25519MLKEM768, and no X25519 (refuses TLS 1.3
//	           clients without ML-KEM)
//	p384       presents an ECDSA P-384 certificate
//
// and otherwise as the real controller does (TLS 1.3 only unless an
// exception in force in RUSTYNET_INSECURE, granted by the crypto policy,
// allows TLS 1.2).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rustynet/rustynet/internal/insecure"
	"github.com/rustynet/rustynet/internal/readyfile"
	"github.com/rustynet/rustynet/policies"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakecontroller:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		return fmt.Errorf("usage: fakecontroller serve --data-dir DIR --listen ADDR")
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("data-dir", "", "")
	listen := fs.String("listen", "127.0.0.1:0", "")
	fs.String("metrics-listen", "", "")
	ready := fs.String("ready-file", "", "")
	cryptoPolicy := fs.String("crypto-policy", "", "")
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	var grants []insecure.Grant
	if *cryptoPolicy != "" {
		pol, err := policies.LoadCrypto(*cryptoPolicy)
		if err != nil {
			return err
		}
		grants = insecure.GrantsOf(pol)
	}
	mode := os.Getenv("CRYPTOPOLICY_FAKE")
	curve := elliptic.P256()
	if mode == "p384" {
		curve = elliptic.P384()
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fakecontroller"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(*dir, "tls"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "tls", "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
	if insecure.Get("controller-tls12").Authorize(grants, *cryptoPolicy, time.Now()).Enabled {
		conf.MinVersion = tls.VersionTLS12
	}
	switch mode {
	case "ungranted":
		if insecure.Get("controller-tls12").Enabled {
			conf.MinVersion = tls.VersionTLS12
		}
	case "tls12":
		conf.MinVersion = tls.VersionTLS12
	case "lapsed":
		if strings.Contains(os.Getenv("RUSTYNET_INSECURE"), "controller-tls12@") {
			conf.MinVersion = tls.VersionTLS12
		}
	case "classical":
		conf.CurvePreferences = []tls.CurveID{tls.X25519}
	case "hybridonly":
		// P-256 stays for TLS 1.2 under an exception (ML-KEM is TLS 1.3's).
		conf.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256}
	}
	ln, err := tls.Listen("tcp", *listen, conf)
	if err != nil {
		return err
	}
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("controller serving", "listen", ln.Addr().String(), "mode", mode)
	if *ready != "" {
		if err := readyfile.Write(*ready, readyfile.Info{PID: os.Getpid(), API: ln.Addr().String()}); err != nil {
			return err
		}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.(*tls.Conn).Handshake()
		}()
	}
}
