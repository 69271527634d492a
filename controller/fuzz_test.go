package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rustynet/rustynet/controller/api"
	"github.com/rustynet/rustynet/controller/store"
	"github.com/rustynet/rustynet/controller/store/bolt"
)

// fuzzDecode checks a request decoder with the body limit of its route: no
// input crashes it, every refusal is a 400 or 413 with a message, and
// whatever it accepts survives a round trip.
func fuzzDecode[T any, PT interface {
	*T
	validator
}](f *testing.F, limit int64, seeds ...string) {
	for _, s := range append(seeds, "", "{}", "null", "[]", `{"a":1}`, "{}{}", `{"x":`, "\x00", strings.Repeat("[", 10000)) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decode[T, PT](bytes.NewReader(body), limit)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || (e.Status != 400 && e.Status != 413) || e.Message == "" || e.Code == "" {
				t.Fatalf("decode(%q) error = %#v, want a 400 or 413 *api.Error with a message", body, err)
			}
			return
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("re-encoding an accepted %T: %v", v, err)
		}
		v2, err := decode[T, PT](bytes.NewReader(again), limit)
		if err != nil {
			t.Fatalf("decode(%s) of a re-encoded accepted value: %v", again, err)
		}
		if again2, _ := json.Marshal(v2); !bytes.Equal(again, again2) {
			t.Fatalf("round trip changed the value: %s became %s", again, again2)
		}
	})
}

const (
	fuzzNK = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	fuzzMK = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
)

func FuzzDecodeRegister(f *testing.F) {
	fuzzDecode[api.RegisterRequest](f, api.MaxBodyBytes,
		`{"auth_key":"rnk_x_y","node_key":"`+fuzzNK+`","machine_key":"`+fuzzMK+`"}`,
		`{"auth_key":"k","node_key":"`+fuzzNK+`","machine_key":"`+fuzzMK+`","hostname":"h","backends":["wireguard","quic"],"endpoints":["192.0.2.1:1","[2001:db8::1]:2"],"listen_port":41641}`,
		`{"auth_key":"k","node_key":"`+fuzzNK+`","machine_key":"`+fuzzNK+`"}`,
		`{"node_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`,
		`{"endpoints":["[fe80::1%eth0]:1"]}`)
}

func FuzzDecodeEndpoints(f *testing.F) {
	fuzzDecode[api.EndpointsRequest](f, api.MaxBodyBytes, `{"endpoints":["192.0.2.1:41641"],"listen_port":41641}`, `{"endpoints":["0.0.0.0:0"]}`, `{"endpoints":[]}`, `{"listen_port":70000}`)
}

func FuzzDecodeRotateKey(f *testing.F) {
	fuzzDecode[api.RotateKeyRequest](f, api.MaxBodyBytes, `{"node_key":"`+fuzzNK+`"}`, `{"node_key":""}`, `{"node_key":"!!!!"}`)
}

func FuzzDecodeCreateAuthKey(f *testing.F) {
	fuzzDecode[api.CreateAuthKeyRequest](f, api.MaxBodyBytes, `{"ttl_seconds":3600,"reusable":true,"tags":["tag:a"],"description":"d"}`, `{"ttl_seconds":-1}`, `{"ttl_seconds":9223372036854775807}`, `{"ttl_seconds":1,"tags":["tag:a","tag:a"]}`)
}

func FuzzDecodeSetPolicy(f *testing.F) {
	fuzzDecode[api.SetPolicyRequest](f, api.MaxPolicyBodyBytes, `{"policy":"acls: []\n"}`, `{"policy":""}`, `{"policy":5}`)
}

// testServer starts a controller on a bolt store in a temporary dir with a
// short long-poll cap and no per-node rate limits (so fuzzing reaches the
// handlers behind them), creates a reusable auth key, and registers one
// node.
func testServer(f testing.TB, reg prometheus.Registerer) (s *Server, key, cred string) {
	dir := f.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	s, err = New(Config{Store: st, MaxWait: 20 * time.Millisecond, Registerer: reg, Limits: Limits{NodeRate: -1, PollRate: -1},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close(); st.Close() })

	rec := httptest.NewRecorder()
	s.AdminHandler().ServeHTTP(rec, httptest.NewRequest("POST", api.AdminPathAuthKeys, strings.NewReader(`{"ttl_seconds":3600,"reusable":true}`)))
	var ak api.CreateAuthKeyResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &ak); err != nil || rec.Code != 201 {
		f.Fatalf("create key: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	req := httptest.NewRequest("POST", api.PathRegister, strings.NewReader(`{"auth_key":"`+ak.Key+`","node_key":"`+fuzzNK+`","machine_key":"`+fuzzMK+`"}`))
	req.Header.Set(api.HeaderCapabilityVersion, "1")
	s.Handler().ServeHTTP(rec, req)
	var rr api.RegisterResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &rr); err != nil || rec.Code != 200 {
		f.Fatalf("register: %d %s", rec.Code, rec.Body)
	}
	return s, ak.Key, rr.Credential
}

// checkResponse fails unless the answer is below 500 and, for an error, a
// JSON error body with a code and a message.
func checkResponse(t *testing.T, req string, rec *httptest.ResponseRecorder) {
	if rec.Code >= 500 {
		t.Fatalf("%s answered %d: %s", req, rec.Code, rec.Body)
	}
	if rec.Code >= 400 {
		var eb api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%s answered %d with body %q, want a JSON error with code and message", req, rec.Code, rec.Body)
		}
	}
}

// FuzzAPI sends arbitrary requests to the node API. In the body, $KEY
// becomes a valid reusable auth key, $NK and $MK random keys; with useCred
// the request carries a valid node credential. No request may crash the
// server or make it answer 5xx.
func FuzzAPI(f *testing.F) {
	s, key, cred := testServer(f, nil)
	h := s.Handler()
	for _, c := range []struct {
		method, target, version, authz string
		useCred                        bool
		body                           string
	}{
		{"POST", api.PathRegister, "1", "", false, `{"auth_key":"$KEY","node_key":"$NK","machine_key":"$MK","hostname":"x"}`},
		{"POST", api.PathRegister, "1", "", true, `{"auth_key":"$KEY","node_key":"$NK","machine_key":"` + fuzzMK + `"}`},
		{"GET", api.PathNetmap + "?since=0", "1", "", true, ""},
		{"GET", api.PathNetmap + "?since=1&wait=0", "1", "", true, ""},
		{"GET", api.PathNetmap + "?since=99999999&wait=0", "1", "", true, ""},
		{"POST", api.PathEndpoints, "1", "", true, `{"endpoints":["192.0.2.1:1"],"listen_port":5}`},
		{"POST", api.PathRotateKey, "1", "", true, `{"node_key":"$NK"}`},
		{"GET", api.PathHealthz, "", "", false, ""},
		{"GET", "/v1/netmap?since=x", "1", "Bearer rnc_n1_x", false, ""},
		{"DELETE", "/v1/register/x", "0", "Basic abc", false, "{}"},
		{"POST", api.PathLogout, "1", "", false, ""},
		{"GET", api.PathRegisterChallenge, "3", "", false, ""},
		{"GET", api.PathRegisterChallenge, "3", "", false, "{}"},
		{"POST", api.PathRegister, "3", "", false, `{"auth_key":"$KEY","node_key":"$NK","machine_key":"$MK","challenge":"c1.AAAA","machine_proof":"` + strings.Repeat("A", 43) + `="}`},
		{"POST", api.PathRegister, "3", "", false, `{"auth_key":"$KEY","node_key":"$NK","machine_key":"$MK"}`},
		{"POST", api.PathEndpoints, "3", "", true, `{"endpoints":["169.254.169.254:80","[fe80::1%eth0]:5"]}`},
		{"GET", api.PathNetmap, "+3", "", true, ""},
		{"POST", PathReplicaCommit, "3", "", false, `{"register":{"machine_key":"$MK","node_key":"$NK","auth_key_id":"x","new_id":"n0123456789abcdef"}}`},
	} {
		f.Add(c.method, c.target, c.version, c.authz, c.useCred, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, method, target, version, authz string, useCred bool, body []byte) {
		if useCred && strings.HasPrefix(target, api.PathLogout) {
			return // keep the fuzzing node registered
		}
		body = bytes.ReplaceAll(body, []byte("$KEY"), []byte(key))
		body = bytes.ReplaceAll(body, []byte("$NK"), []byte(randomKey()))
		body = bytes.ReplaceAll(body, []byte("$MK"), []byte(randomKey()))
		req, err := http.NewRequestWithContext(context.Background(), method, "https://controller"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.RemoteAddr = "192.0.2.7:1234"
		if version != "" {
			req.Header.Set(api.HeaderCapabilityVersion, version)
		}
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if useCred {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, method+" "+target, rec)
	})
}

// FuzzReplicaCommit hands arbitrary writes to a writer replica, as
// another replica (its client certificate checked) would: whatever the
// body, a refusal, never a 5xx, and nothing else changes.
func FuzzReplicaCommit(f *testing.F) {
	s, key, _ := testServer(f, nil)
	s.isReplica = func(*tls.ConnectionState) bool { return true }
	h := s.Handler()
	keyID, keySecret, _ := splitToken(key, api.AuthKeyPrefix)
	keyHash := store.Hash(sha256.Sum256([]byte(keySecret)))
	for _, body := range []string{
		`{"register":{"machine_key":"$MK","node_key":"$NK","auth_key_id":"$KID","auth_key_hash":"$KH","new_id":"n0123456789abcdef","proven":true,"new_credential_hash":"$KH"}}`,
		`{"register":{"machine_key":"$MK","node_key":"$NK","auth_key_id":"$KID","auth_key_hash":"$KH","new_id":"n0123456789abcdef","credential_node":"n1","credential_hash":"$KH","endpoints":["192.0.2.1:1"],"observed":"192.0.2.7:41641"}}`,
		`{"register":{"machine_key":"` + fuzzMK + `","node_key":"$NK","auth_key_id":"$KID","auth_key_hash":"00","new_id":"n0123456789abcdef"}}`,
		`{"register":{"machine_key":"$MK","node_key":"$NK","auth_key_id":"x","new_id":"nzz"}}`,
		`{"register":null}`, `{}`, `{"register":{"endpoints":["[fe80::1%eth0]:1"]}}`,
		`{"endpoints":[{"node":"n0123456789abcdef","credential_hash":"$KH","endpoints":["192.0.2.1:1"],"listen_port":9,"observed":"192.0.2.7:9"}]}`,
		`{"endpoints":[{"node":"n0123456789abcdef"},{"node":"n0123456789abcdef"}]}`,
		`{"endpoints":[{"node":"x","endpoints":["127.0.0.1:1"]}],"register":{}}`,
		`{"endpoints":[]}`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.ReplaceAll(body, []byte("$KID"), []byte(keyID))
		body = bytes.ReplaceAll(body, []byte("$KH"), []byte(hex.EncodeToString(keyHash[:])))
		body = bytes.ReplaceAll(body, []byte("$NK"), []byte(randomKey()))
		body = bytes.ReplaceAll(body, []byte("$MK"), []byte(randomKey()))
		req := httptest.NewRequest(http.MethodPost, "https://controller"+PathReplicaCommit, bytes.NewReader(body))
		req.Header.Set(api.HeaderCapabilityVersion, "3")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, "POST "+PathReplicaCommit, rec)
	})
}

func FuzzDecodeReplicaCommit(f *testing.F) {
	fuzzDecode[replicaCommitRequest](f, api.MaxBodyBytes,
		`{"register":{"machine_key":"`+fuzzMK+`","node_key":"`+fuzzNK+`","auth_key_id":"k","new_id":"n0123456789abcdef"}}`,
		`{"register":{"machine_key":"`+fuzzMK+`","node_key":"`+fuzzNK+`","auth_key_id":"k","new_id":"n0123456789abcdef","credential_node":"n1"}}`,
		`{"register":{}}`, `{}`,
		`{"endpoints":[{"node":"n0123456789abcdef","credential_hash":"00","endpoints":["192.0.2.1:1"]}]}`)
}

// FuzzAdmin sends arbitrary requests to the admin API.
func FuzzAdmin(f *testing.F) {
	s, _, _ := testServer(f, nil)
	h := s.AdminHandler()
	for _, c := range []struct{ method, target, body string }{
		{"POST", api.AdminPathAuthKeys, `{"ttl_seconds":60,"tags":["tag:a"]}`},
		{"GET", api.AdminPathAuthKeys, ""},
		{"DELETE", api.AdminPathAuthKeys + "/abc", ""},
		{"GET", api.AdminPathNodes, ""},
		{"DELETE", api.AdminPathNodes + "/nope", ""},
		{"PUT", api.AdminPathPolicy, `{"policy":"acls:\n  - action: accept\n    src: ['*']\n    dst: ['*']\n"}`},
		{"PUT", api.AdminPathPolicy, `{"policy":"acls: [\n"}`},
		{"GET", api.AdminPathPolicy, ""},
		{"POST", api.AdminPathBackup, ""},
		{"PATCH", api.AdminPathNodes + "/nope", `{"name":"web1"}`},
		{"PATCH", api.AdminPathNodes + "/n0123456789abcdef", `{"name":"n0123456789abcdef"}`},
		{"POST", api.AdminPathAuthKeys, `{"ttl_seconds":60,"name":"web1"}`},
		{"POST", api.AdminPathAuthKeys, `{"ttl_seconds":60,"name":"web1","reusable":true}`},
	} {
		f.Add(c.method, c.target, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, method, target string, body []byte) {
		if method == http.MethodDelete && strings.HasPrefix(target, api.AdminPathNodes) {
			return // keep the fuzzing node registered
		}
		req, err := http.NewRequestWithContext(context.Background(), method, "http://controller"+target, bytes.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, method+" "+target, rec)
	})
}

func randomKey() string {
	var k api.NodePublic
	copy(k[:], randomHex(16))
	return k.String()
}
