package quic

import (
	"testing"

	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/backend/conformance"
)

func TestConformance(t *testing.T) {
	conformance.Run(t, backend.Spec{Name: Name, New: New, PublicKey: PublicKey, MaxMTU: MaxMTU})
}
