package evidence

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/rustynet/rustynet/internal/atomicfile"
)

// Key file names written by Keygen.
const (
	PrivateKeyFile = "gate.key"
	PublicKeyFile  = "gate.pub"
)

// Algorithms for Keygen.
const (
	ECDSAP256 = "ecdsa-p256"
	Ed25519   = "ed25519"
)

// Keygen writes a new signing key pair into dir: the private key as
// PKCS#8 PEM (mode 0600) and the public key as PKIX PEM.
func Keygen(dir, alg string) (pub crypto.PublicKey, err error) {
	var priv crypto.Signer
	switch alg {
	case ECDSAP256, "":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("algorithm %q: want %s or %s", alg, ECDSAP256, Ed25519)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, PrivateKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("%s exists; refusing to overwrite a signing key", keyPath)
	}
	if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, PublicKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return priv.Public(), nil
}

// Signer signs DSSE envelopes with an ECDSA P-256 (DER signatures, as
// cosign expects) or Ed25519 key. It implements dsse.SignerVerifier.
type Signer struct {
	priv  crypto.Signer
	keyID string
}

// Verifier checks DSSE signatures against a public key. It implements
// dsse.Verifier.
type Verifier struct {
	pub   crypto.PublicKey
	keyID string
}

var (
	_ dsse.SignerVerifier = (*Signer)(nil)
	_ dsse.Verifier       = (*Verifier)(nil)
)

// LoadSigner reads a PKCS#8 PEM private key. It refuses a key file that
// others can read.
func LoadSigner(path string) (*Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %o; a signing key must not be readable by others (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS#8 PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", path, k)
	}
	switch p := priv.Public().(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%s: ECDSA keys must be P-256", path)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%s: key type %T; want ECDSA P-256 or Ed25519", path, p)
	}
	id, err := KeyID(priv.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{priv: priv, keyID: id}, nil
}

// LoadVerifier reads a PKIX PEM public key.
func LoadVerifier(path string) (*Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseVerifier(data)
}

// ParseVerifier parses a PKIX PEM public key.
func ParseVerifier(data []byte) (*Verifier, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("no PKIX PUBLIC KEY block")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("public key type %T; want ECDSA P-256 or Ed25519", pub)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Verifier{pub: pub, keyID: id}, nil
}

// VerifierFromKey returns a verifier for a public key.
func VerifierFromKey(pub crypto.PublicKey) (*Verifier, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("public key type %T; want ECDSA P-256 or Ed25519", pub)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Verifier{pub: pub, keyID: id}, nil
}

// KeyID names a key as go-securesystemslib's dsse.SHA256KeyID does: the
// OpenSSH SHA-256 fingerprint of the public key ("SHA256:" and the
// unpadded base64 of the SHA-256 of its SSH wire encoding).
func KeyID(pub crypto.PublicKey) (string, error) {
	return dsse.SHA256KeyID(pub)
}

// Sign implements dsse.Signer: ECDSA signs the SHA-256 of data (DER
// encoded), Ed25519 signs data itself.
func (s *Signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	switch k := s.priv.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(data)
		return ecdsa.SignASN1(rand.Reader, k, sum[:])
	default:
		return s.priv.Sign(rand.Reader, data, crypto.Hash(0))
	}
}

// KeyID implements dsse.Signer.
func (s *Signer) KeyID() (string, error) { return s.keyID, nil }

// Public returns the public key.
func (s *Signer) Public() crypto.PublicKey { return s.priv.Public() }

// Verify implements dsse.Verifier for the signer's own key.
func (s *Signer) Verify(ctx context.Context, data, sig []byte) error {
	return (&Verifier{pub: s.priv.Public(), keyID: s.keyID}).Verify(ctx, data, sig)
}

// Verify implements dsse.Verifier.
func (v *Verifier) Verify(_ context.Context, data, sig []byte) error {
	switch k := v.pub.(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(data)
		if !ecdsa.VerifyASN1(k, sum[:], sig) {
			return errors.New("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, data, sig) {
			return errors.New("Ed25519 signature does not verify")
		}
	default:
		return fmt.Errorf("unsupported key type %T", k)
	}
	return nil
}

// KeyID implements dsse.Verifier.
func (v *Verifier) KeyID() (string, error) { return v.keyID, nil }

// Public implements dsse.Verifier.
func (v *Verifier) Public() crypto.PublicKey { return v.pub }
