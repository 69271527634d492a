package quic

import (
	"testing"

	"github.com/rustynet/rustynet/node/backend"
	"github.com/rustynet/rustynet/node/backend/conformance"
)

// TestConformance runs the suite on the spec Register gives, so that it
// checks what the backend claims as rustynetd sees it.
func TestConformance(t *testing.T) {
	var r backend.Registry
	Register(&r)
	spec, _ := r.Spec(Name)
	conformance.Run(t, spec)
}
