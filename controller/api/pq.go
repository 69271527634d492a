package api

import "regexp"

// Post-quantum modes, which the controller's policy sets per node (the
// policy's pq rules) and the netmap carries as Node.PQMode. Since
// capability version 4.
const (
	// PQOff runs classical WireGuard with every peer. It is what a node
	// no rule selects gets, and what an absent PQMode means.
	PQOff = "off"
	// PQPrefer adds the post-quantum preshared key with every peer whose
	// mode is not off and that runs a scheme this node runs; classical
	// with the others.
	PQPrefer = "prefer"
	// PQRequire passes no traffic to a peer until the pair holds the
	// post-quantum preshared key: a peer that cannot run it, or whose
	// mode is off, is refused (downgrade protection).
	PQRequire = "require"
)

// ValidPQMode reports whether m is one of the modes.
func ValidPQMode(m string) bool { return m == PQOff || m == PQPrefer || m == PQRequire }

// MaxPQSchemes bounds the post-quantum schemes a node may announce.
const MaxPQSchemes = 8

var pqSchemeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// validatePQ checks the post-quantum schemes a node announces: names of
// lowercase letters, digits and dashes, none twice. Schemes this build
// does not know are accepted (a newer node may run more) and ignored.
func validatePQ(schemes []string) error {
	return validateNames("pq scheme", schemes, MaxPQSchemes, pqSchemeRE)
}
