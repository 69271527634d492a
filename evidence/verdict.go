package evidence

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	testresult "github.com/in-toto/attestation/go/predicates/test_result/v0"
	vsa "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// VerifierID names the verifier in verification summaries.
const VerifierID = "https://github.com/rustynet/rustynet/cmd/rustynet-gate"

// Verdict results, as SLSA verification summaries spell them.
const (
	Passed = "PASSED"
	Failed = "FAILED"
)

// ChannelLevel is how a verification summary records the channel the
// verdict is for.
func ChannelLevel(channel string) string { return "RUSTYNET_CHANNEL_" + strings.ToUpper(channel) }

// PartialLevel is how a verification summary of a partial run (some of a
// channel's gates only) records the channel: deliberately not the
// channel's level, so that no consumer checking for a channel accepts it.
func PartialLevel(channel string) string {
	return "RUSTYNET_PARTIAL_RUN_OF_CHANNEL_" + strings.ToUpper(channel)
}

// GatesLevel is how a verification summary records a channel whose
// verdict also needs sign-offs (policies/release.yaml, signoffs): the
// gates' verdict only, deliberately not the channel's level, so that no
// consumer checking for the channel accepts a bundle nobody has signed
// off. The sign-offs are added to the bundle later, each signed by its
// signer, and `rustynet-gate verify` gives the channel's verdict.
func GatesLevel(channel string) string {
	return "RUSTYNET_GATES_OF_CHANNEL_" + strings.ToUpper(channel)
}

// VerdictInput is what the verdict statement records.
type VerdictInput struct {
	Subjects []Subject
	Commit   string
	Channel  string
	Policy   ArtifactRef
	Manifest ArtifactRef
	Gates    []ArtifactRef // the gate statements
	Passed   bool
	At       time.Time
	Version  string // of rustynet-gate
	// Partial is true for a run of some of the channel's gates only.
	Partial bool
	// AwaitsSignoff is true when the channel requires sign-offs: the
	// summary is the gates' verdict (GatesLevel).
	AwaitsSignoff bool
}

// VerdictStatement builds the verdict: a SLSA verification summary of the
// commit under the policy, listing the manifest and every gate statement
// it was computed from, with their digests.
func VerdictStatement(in VerdictInput) (*intoto.Statement, error) {
	result := Failed
	if in.Passed {
		result = Passed
	}
	sum := &vsa.VerificationSummary{
		Verifier:     &vsa.VerificationSummary_Verifier{Id: VerifierID + "@" + in.Version},
		TimeVerified: timestamppb.New(in.At),
		ResourceUri:  "git+https://github.com/rustynet/rustynet@" + in.Commit,
		Policy: &vsa.VerificationSummary_Policy{
			Uri:    in.Policy.Path,
			Digest: map[string]string{"sha256": in.Policy.SHA256},
		},
		VerificationResult: result,
		VerifiedLevels:     []string{ChannelLevel(in.Channel)},
	}
	switch {
	case in.Partial:
		sum.VerifiedLevels = []string{PartialLevel(in.Channel)}
	case in.AwaitsSignoff:
		sum.VerifiedLevels = []string{GatesLevel(in.Channel)}
	}
	sum.InputAttestations = append(sum.InputAttestations, &vsa.VerificationSummary_InputAttestation{
		Uri: in.Manifest.Path, Digest: map[string]string{"sha256": in.Manifest.SHA256}})
	for _, g := range in.Gates {
		sum.InputAttestations = append(sum.InputAttestations, &vsa.VerificationSummary_InputAttestation{
			Uri: g.Path, Digest: map[string]string{"sha256": g.SHA256}})
	}
	pred, err := ProtoStruct(sum)
	if err != nil {
		return nil, err
	}
	return NewStatement(in.Subjects, PredicateVerdict, pred)
}

// Channel returns the channel a verification summary records, and
// whether it records a partial run of it.
func Channel(sum *vsa.VerificationSummary) (channel string, partial bool) {
	for _, l := range sum.GetVerifiedLevels() {
		if c, ok := strings.CutPrefix(l, PartialLevel("")); ok {
			return strings.ToLower(c), true
		}
		if c, ok := strings.CutPrefix(l, GatesLevel("")); ok {
			return strings.ToLower(c), false
		}
		if c, ok := strings.CutPrefix(l, ChannelLevel("")); ok {
			return strings.ToLower(c), false
		}
	}
	return "", false
}

// GatesOnly reports whether a summary is a gates' verdict awaiting
// sign-offs (GatesLevel).
func GatesOnly(sum *vsa.VerificationSummary) bool {
	for _, l := range sum.GetVerifiedLevels() {
		if strings.HasPrefix(l, GatesLevel("")) {
			return true
		}
	}
	return false
}

func protojsonUnmarshal(raw []byte, m *vsa.VerificationSummary) error {
	return protojson.Unmarshal(raw, m)
}

// TestResultPredicate builds an in-toto test-result predicate.
func TestResultPredicate(passed bool, passedTests, failedTests []string, url string, config []Subject) (any, error) {
	tr := &testresult.TestResult{Result: "FAILED", Url: url, PassedTests: passedTests, FailedTests: failedTests}
	if passed {
		tr.Result = "PASSED"
	}
	for _, c := range config {
		tr.Configuration = append(tr.Configuration, &intoto.ResourceDescriptor{Name: c.Name, Digest: c.Digest})
	}
	return ProtoStruct(tr)
}

// decodeGate fills gs.Result from the statement's predicate.
func decodeGate(st *intoto.Statement, gs *GateStatement) error {
	raw, err := st.GetPredicate().MarshalJSON()
	if err != nil {
		return err
	}
	switch st.GetPredicateType() {
	case PredicateGateResult:
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		if err := dec.Decode(&gs.Result); err != nil {
			return fmt.Errorf("gate result: %w", err)
		}
		if gs.Result.Gate != gs.Name {
			return fmt.Errorf("statement file is for gate %s but says %s", gs.Name, gs.Result.Gate)
		}
	case PredicateTestResult:
		var tr testresult.TestResult
		if err := protojson.Unmarshal(raw, &tr); err != nil {
			return fmt.Errorf("test result: %w", err)
		}
		// Its details are the counts the signed test result lists: what
		// a launch checklist item on the gate reads (details.failed).
		counts, _ := json.Marshal(map[string]int{"passed": len(tr.GetPassedTests()), "failed": len(tr.GetFailedTests())})
		gs.Result = GateResult{Gate: gs.Name, Status: StatusFail, Reason: fmt.Sprintf("%d tests failed", len(tr.GetFailedTests())), Details: counts}
		if tr.GetResult() == "PASSED" {
			gs.Result.Status, gs.Result.Reason = StatusPass, ""
		}
	default:
		return fmt.Errorf("unknown predicate type %q", st.GetPredicateType())
	}
	switch gs.Result.Status {
	case StatusPass, StatusFail, StatusNotRun, StatusError, StatusTimeout:
	default:
		return fmt.Errorf("unknown gate status %q", gs.Result.Status)
	}
	return nil
}
