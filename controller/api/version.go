// Package api holds the wire types of the Rustynet control API: the only
// controller package a node imports.
//
// Compatibility is recorded here, in the manner of Tailscale's tailcfg: a
// single, monotonically increasing CapabilityVersion with a dated history of
// what each bump means. Within API major version 1 the types change only
// additively; a field added after version 1 says from which version it may be
// present, and a client must accept its absence from an older controller.
package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// CapabilityVersion identifies what a client or controller understands. It
// only ever increases; every request carries the client's value in the
// HeaderCapabilityVersion header and every response carries the
// controller's.
type CapabilityVersion int

// Revision is one entry in the dated history of CapabilityVersion.
type Revision struct {
	Version CapabilityVersion
	Date    string // YYYY-MM-DD, when the bump landed
	Release string // the first release that speaks it
	Change  string // what a peer of this version may rely on
}

// History is the complete, append-only record of capability versions.
// Never edit or remove an entry: append a new one and bump
// CurrentCapabilityVersion.
var History = []Revision{
	{
		Version: 1,
		Date:    "2026-11-25",
		Release: "v0.1.0",
		Change: "API v1: POST /v1/register with a pre-auth key, node key and machine key; " +
			"bearer node credentials; GET /v1/netmap long-poll with full and delta map " +
			"responses; POST /v1/endpoints, /v1/rotate-key, /v1/logout; JSON error bodies.",
	},
	{
		Version: 2,
		Date:    "2026-11-25",
		Release: "v0.2.0",
		Change: "Backend agility: register and rotate-key carry backend_keys (a node's public key per " +
			"backend that does not use the node key); netmap nodes carry backend_keys, and backends " +
			"holds the one backend the controller chose for that node (policy 'backends' rules, else " +
			"the node's first); peers the ACL allows but that run another backend are sent to clients " +
			"of version 2 or later as stubs with 'unreachable' and no keys, addresses or endpoints " +
			"(version 1 clients do not get them).",
	},
	{
		Version: 3,
		Date:    "2026-12-02",
		Release: "v0.3.0",
		Change: "Hardening: GET /v1/register/challenge and register's challenge and machine_proof, which prove " +
			"the node holds its machine private key (required from version 3); a registration retried with " +
			"a proof for a machine key that is already registered is answered with the same node (its answer " +
			"was lost), even when its single-use auth key was used by that first attempt; a client over its " +
			"per-node rate or long-poll limit gets 429 rate_limited with Retry-After (seconds); GET requests " +
			"with a body are refused; endpoints on loopback, link-local, broadcast or mesh addresses are refused.",
	},
	{
		Version: 4,
		Date:    "2026-12-04",
		Release: "v0.4.0",
		Change: "Post-quantum preshared keys: register and endpoints carry pq, the post-quantum schemes the node " +
			"runs (an endpoints report replaces them; one from an older client clears them); netmap nodes carry " +
			"pq and pq_mode (off, prefer or require, from the policy's pq rules), sent only to clients of version 4 " +
			"or later. Pairs run the exchange of node/pq over their tunnel, TCP port 5362.",
	},
}

const (
	// CurrentCapabilityVersion is what this build speaks.
	CurrentCapabilityVersion CapabilityVersion = 4

	// MinSupportedCapabilityVersion is the oldest client the controller
	// serves. Raising it follows a deprecation process: announce, keep
	// serving until its sunset (Deprecations), then raise. The windows
	// are policies/compat.yaml's, and the compat gate blocks a raise
	// past a version whose sunset has not come. Older clients get 426
	// Upgrade Required.
	MinSupportedCapabilityVersion CapabilityVersion = 1
)

// Deprecation announces the removal of a capability version. From
// Announced the controller answers every request of a client of that
// version with the Deprecation (RFC 9745) and Sunset (RFC 8594) headers,
// and it serves that version until Sunset at least. These are the
// announcements of policies/compat.yaml, which sets the notice and the
// support window they must respect (a test keeps the two equal).
type Deprecation struct {
	Version   CapabilityVersion
	Announced string // YYYY-MM-DD (UTC)
	Sunset    string // YYYY-MM-DD (UTC)
}

// Deprecations lists every announced removal. Like History, entries are
// never removed: a version dropped (MinSupportedCapabilityVersion raised
// past it) keeps its entry.
var Deprecations = []Deprecation{
	{Version: 1, Announced: "2026-12-04", Sunset: "2027-12-02"},
	{Version: 2, Announced: "2026-12-04", Sunset: "2027-12-02"},
}

// DeprecationHeaders returns the Deprecation and Sunset header values for
// a client of version v at time now, or ok false when no removal of v has
// been announced by then. Deprecation is a structured-field date (@ and
// Unix seconds, RFC 9745), Sunset an HTTP date (RFC 8594).
func DeprecationHeaders(v CapabilityVersion, now time.Time) (deprecation, sunset string, ok bool) {
	for _, d := range Deprecations {
		if d.Version != v {
			continue
		}
		announced, err1 := time.Parse(time.DateOnly, d.Announced)
		end, err2 := time.Parse(time.DateOnly, d.Sunset)
		if err1 != nil || err2 != nil || now.Before(announced) {
			return "", "", false
		}
		return "@" + strconv.FormatInt(announced.Unix(), 10), end.UTC().Format(http.TimeFormat), true
	}
	return "", "", false
}

// Header names used by the API.
const (
	// HeaderCapabilityVersion carries the sender's CapabilityVersion as a
	// decimal integer, on every request and every response.
	HeaderCapabilityVersion = "Rustynet-Capability-Version"
	// HeaderMinCapabilityVersion carries the controller's
	// MinSupportedCapabilityVersion on every response.
	HeaderMinCapabilityVersion = "Rustynet-Min-Capability-Version"
	// HeaderDeprecation (RFC 9745) and HeaderSunset (RFC 8594) are set on
	// answers to a client whose capability version is to be removed:
	// when the removal was announced, and the date from which that
	// version may no longer be served.
	HeaderDeprecation = "Deprecation"
	HeaderSunset      = "Sunset"
)

// ParseCapabilityVersion parses a HeaderCapabilityVersion value.
func ParseCapabilityVersion(s string) (CapabilityVersion, error) {
	if s == "" {
		return 0, fmt.Errorf("missing %s header", HeaderCapabilityVersion)
	}
	// Decimal digits only: no sign, space or leading zero, so that one
	// version has one spelling.
	ok := len(s) <= 9 && (s == "0" || s[0] != '0')
	for i := 0; ok && i < len(s); i++ {
		ok = s[i] >= '0' && s[i] <= '9'
	}
	if !ok {
		return 0, fmt.Errorf("%s header %q is not a non-negative decimal integer (digits only)", HeaderCapabilityVersion, truncate(s, 32))
	}
	n, _ := strconv.Atoi(s)
	return CapabilityVersion(n), nil
}

func (v CapabilityVersion) String() string { return strconv.Itoa(int(v)) }

// ReleaseFor names the first release that speaks v, or "" if v is unknown.
func ReleaseFor(v CapabilityVersion) string {
	for _, r := range History {
		if r.Version == v {
			return r.Release
		}
	}
	return ""
}

// UpgradeMessage says what a client of version v must upgrade to. It is the
// message of a 426 response.
func UpgradeMessage(v CapabilityVersion) string {
	msg := fmt.Sprintf("client capability version %d is no longer supported; the oldest supported is %d", v, MinSupportedCapabilityVersion)
	if rel := ReleaseFor(MinSupportedCapabilityVersion); rel != "" {
		msg += fmt.Sprintf(": upgrade rustynetd to %s or later", rel)
	}
	return msg
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
