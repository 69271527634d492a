package controller

import (
	"net/url"
	"strings"
	"testing"
)

func FuzzParseEndpoints(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:2379", "https://a:1,https://b:2", "", ",", "a:1", "http://a:1,http://a:1", "http://u@a:1/x?q"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		eps, err := ParseEndpoints(list)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty refusal")
			}
			return
		}
		if len(eps) == 0 {
			t.Fatal("no endpoint and no error")
		}
		seen := map[string]bool{}
		for _, ep := range eps {
			u, err := url.Parse(ep)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(ep, ",@?") {
				t.Fatalf("accepted %q from %q", ep, list)
			}
			if seen[u.Host] {
				t.Fatalf("accepted %q twice", u.Host)
			}
			seen[u.Host] = true
		}
	})
}
