// Package evidence writes and verifies release evidence bundles: one
// in-toto Statement v1 per gate and one for the overall verdict (a SLSA
// verification summary), each in a DSSE envelope signed with the gate key;
// a signed manifest with the sha256 of every artifact; the policy the
// verdict was computed under. Verification re-checks every signature and
// digest; it never trusts a stored verdict (the gates package recomputes
// it).
package evidence

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rustynet/rustynet/internal/machine"
)

// Types of payloads and predicates.
const (
	PayloadType         = "application/vnd.in-toto+json"
	ManifestPayloadType = "application/vnd.rustynet.evidence-manifest+json"
	PredicateGateResult = "https://rustynet.dev/attestation/gate-result/v1"
	PredicateTestResult = "https://in-toto.io/attestation/test-result/v0.1"
	PredicateVerdict    = "https://slsa.dev/verification_summary/v1"
)

// Status is a gate's status: what its statement says of it, or, for the
// last two, what a verdict says of a gate that has no statement.
type Status string

// Gate statuses.
const (
	StatusPass    Status = "pass"
	StatusFail    Status = "fail"
	StatusNotRun  Status = "not-run" // a need of the gate is missing on this machine
	StatusError   Status = "error"   // the gate could not run (a bug or broken setup)
	StatusTimeout Status = "timeout"
	// StatusMissing is not a gate's own status: a verdict gives it to a
	// required gate that did not run at all. It blocks.
	StatusMissing Status = "missing"
	// StatusOutOfScope is not a gate's own status: a partial verdict
	// gives it to a required gate the run was not asked to run.
	StatusOutOfScope Status = "out-of-scope"
)

// Subject is what every statement of a bundle is about: the git commit
// and the built binaries.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Budget is the bound a measurement is held to.
type Budget struct {
	Max *float64 `json:"max,omitempty"`
	Min *float64 `json:"min,omitempty"`
	// Source says where the bound comes from (the policy file and key).
	Source string `json:"source,omitempty"`
}

// Measurement is one observed figure with its spread.
type Measurement struct {
	Name        string    `json:"name"`
	Unit        string    `json:"unit"`
	Method      string    `json:"method"`
	Repetitions int       `json:"repetitions"`
	Values      []float64 `json:"values"`
	Mean        float64   `json:"mean"`
	Stddev      float64   `json:"stddev"`
	Min         float64   `json:"min"`
	Max         float64   `json:"max"`
	Budget      *Budget   `json:"budget,omitempty"`
	// WithinBudget is set when there is a budget.
	WithinBudget *bool `json:"within_budget,omitempty"`
}

// ArtifactRef names an artifact of the bundle and its digest.
type ArtifactRef struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// GateResult is the gate-result predicate: what one gate did.
type GateResult struct {
	Gate            string              `json:"gate"`
	Owner           string              `json:"owner"`
	Channel         string              `json:"channel"`
	Status          Status              `json:"status"`
	Reason          string              `json:"reason,omitempty"`
	Started         time.Time           `json:"started"`
	DurationSeconds float64             `json:"duration_seconds"`
	Needs           []string            `json:"needs,omitempty"`
	Environment     machine.Environment `json:"environment"`
	Measurements    []Measurement       `json:"measurements,omitempty"`
	Artifacts       []ArtifactRef       `json:"artifacts,omitempty"`
	Details         json.RawMessage     `json:"details,omitempty"`
}

// NewStatement builds an in-toto Statement v1 about subjects with a
// predicate of the given type (any JSON-encodable value, or a proto
// message already converted with ProtoStruct).
func NewStatement(subjects []Subject, predicateType string, predicate any) (*intoto.Statement, error) {
	var pred *structpb.Struct
	switch p := predicate.(type) {
	case *structpb.Struct:
		pred = p
	default:
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("predicate: %w", err)
		}
		pred = &structpb.Struct{}
		if err := pred.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("predicate: %w", err)
		}
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		PredicateType: predicateType,
		Predicate:     pred,
	}
	for _, s := range subjects {
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{Name: s.Name, Digest: s.Digest})
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	return st, nil
}

// ProtoStruct converts an in-toto predicate proto (a test-result or a
// verification summary) into the Struct a Statement carries.
func ProtoStruct(m proto.Message) (*structpb.Struct, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	return s, s.UnmarshalJSON(raw)
}

// MarshalStatement encodes a statement as the JSON DSSE signs.
func MarshalStatement(st *intoto.Statement) ([]byte, error) {
	return protojson.Marshal(st)
}

// UnmarshalStatement decodes and validates a statement.
func UnmarshalStatement(data []byte) (*intoto.Statement, error) {
	var st intoto.Statement
	if err := protojson.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	return &st, nil
}

// Subjects returns a statement's subjects, sorted by name.
func Subjects(st *intoto.Statement) []Subject {
	var out []Subject
	for _, rd := range st.GetSubject() {
		out = append(out, Subject{Name: rd.GetName(), Digest: rd.GetDigest()})
	}
	slices.SortFunc(out, func(a, b Subject) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// DecodePredicate decodes a statement's predicate into v.
func DecodePredicate(st *intoto.Statement, v any) error {
	raw, err := st.GetPredicate().MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
