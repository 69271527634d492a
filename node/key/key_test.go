package key

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestNodeKeyRoundTrip(t *testing.T) {
	k := NewNode()
	b, err := json.Marshal(struct{ K NodePrivate }{k})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ K NodePrivate }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.K.Equal(k) || back.K.Public() != k.Public() {
		t.Error("node key changed in a JSON round trip")
	}
	if NewNode().Equal(k) {
		t.Error("two generated keys are equal")
	}
}

func TestKeysNeverPrint(t *testing.T) {
	k, m := NewNode(), NewMachine()
	secret := strings.TrimPrefix(string(must(k.MarshalText())), "privkey:")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %s", k, k, k), fmt.Sprint(m)} {
		if strings.Contains(s, secret) || strings.Contains(s, k.UAPI()) {
			t.Errorf("formatting a private key shows it: %q", s)
		}
	}
}

func TestUnmarshalRefusesBadKeys(t *testing.T) {
	var k NodePrivate
	for _, s := range []string{"", "privkey:", "mkey:" + strings.Repeat("A", 43) + "=", "privkey:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "privkey:short"} {
		if err := k.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("UnmarshalText(%q) succeeded", s)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
