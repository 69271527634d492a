package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// reloadEvery bounds how often an operator's certificate files are looked
// at: at most once a second, whatever the handshake rate.
const reloadEvery = time.Second

// OpenFiles serves an operator's certificate instead of the controller's
// own CA: certFile holds the server certificate (then any intermediates)
// and keyFile its private key, both PEM, as a certbot or a corporate CA
// writes them. The controller never renews them: it reloads both files
// when either changes (looked at no more than once a second), so a renewal
// done beside it takes effect without a restart, and a pair that no longer
// loads (half written, a key that does not match) leaves the current one
// served, with the error returned by Renewed. Nodes trust the operator's
// CA (their --controller-ca).
func OpenFiles(certFile, keyFile string, now func() time.Time) (*Manager, error) {
	if now == nil {
		now = time.Now
	}
	m := &Manager{now: now, certFile: certFile, keyFile: keyFile}
	c, stamp, err := loadFiles(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	m.cert, m.stamp, m.checked = c, stamp, now()
	return m, nil
}

// External reports whether the manager serves an operator's certificate
// (OpenFiles) rather than one of its own CA.
func (m *Manager) External() bool { return m.certFile != "" }

// reloadLocked reloads an operator's pair when its files changed. On error
// the current certificate stays.
func (m *Manager) reloadLocked() error {
	now := m.now()
	if now.Sub(m.checked) < reloadEvery && !now.Before(m.checked) {
		return m.reloadErr
	}
	m.checked = now
	stamp, err := fileStamp(m.certFile, m.keyFile)
	if err != nil {
		m.reloadErr = err
		return err
	}
	if stamp == m.stamp && m.reloadErr == nil {
		return nil
	}
	c, stamp, err := loadFiles(m.certFile, m.keyFile)
	if err != nil {
		m.reloadErr = err
		return err
	}
	m.cert, m.stamp, m.reloadErr = c, stamp, nil
	return nil
}

// fileStamp identifies the two files' contents cheaply: size and
// modification time of each.
func fileStamp(certFile, keyFile string) (string, error) {
	var b bytes.Buffer
	for _, f := range []string{certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}

func loadFiles(certFile, keyFile string) (*tls.Certificate, string, error) {
	stamp, err := fileStamp(certFile, keyFile)
	if err != nil {
		return nil, "", err
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, "", fmt.Errorf("%s: %w", certFile, err)
		}
	}
	return &pair, stamp, nil
}
