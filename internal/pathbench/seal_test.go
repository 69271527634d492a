package pathbench

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// BenchmarkSeal is the crypto limit of a WireGuard data path on one core:
// ChaCha20-Poly1305 (golang.org/x/crypto/chacha20poly1305, the AEAD
// wireguard-go's send and receive workers use) sealing one packet of 1420
// or 1280 bytes per call in place, with a counter nonce as WireGuard's,
// single goroutine. SetBytes makes ns/op a throughput (MB/s); Gbit/s is
// reported too, of plaintext sealed.
func BenchmarkSeal(b *testing.B) {
	for _, size := range []int{1420, 1280} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			key := make([]byte, chacha20poly1305.KeySize)
			rand.Read(key)
			aead, err := chacha20poly1305.New(key)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, size, size+chacha20poly1305.Overhead)
			rand.Read(buf)
			var nonce [chacha20poly1305.NonceSize]byte
			b.SetBytes(int64(size))
			var ctr uint64
			for b.Loop() {
				binary.LittleEndian.PutUint64(nonce[4:], ctr)
				ctr++
				aead.Seal(buf[:0], nonce[:], buf, nil)
			}
			b.ReportMetric(float64(size)*8*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gbit/s")
		})
	}
}
