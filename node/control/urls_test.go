package control

import (
	"slices"
	"strings"
	"testing"
)

func TestParseURLs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"https://ctl.example:8443", []string{"https://ctl.example:8443"}},
		{"https://ctl.example:8443/", []string{"https://ctl.example:8443"}},
		{"https://CTL.Example:8443", []string{"https://ctl.example:8443"}},
		{"https://ctl.example", []string{"https://ctl.example:443"}},
		{"https://a:1,https://b:2", []string{"https://a:1", "https://b:2"}},
		{" https://a:1 , https://b:2,https://[2001:DB8::1]:3 ", []string{"https://a:1", "https://b:2", "https://[2001:db8::1]:3"}},
		{"https://192.0.2.10:8443,https://192.0.2.11:8443", []string{"https://192.0.2.10:8443", "https://192.0.2.11:8443"}},
	} {
		got, err := ParseURLs(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseURLs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, why string }{
		{"", "no controller URL"},
		{"  ", "no controller URL"},
		{"https://a:1,", "empty"},
		{",https://a:1", "empty"},
		{"https://a:1,,https://b:2", "empty"},
		{"https://a:1,https://a:1", "listed twice"},
		{"https://a:1,https://A:1/", "listed twice"},
		{"https://a,https://a:443", "listed twice"},
		{"http://a:1", "not https"},
		{"a:1", "not https"},
		{"https://", "no host"},
		{"https://:1", "no host"},
		{"https://a:", "empty port"},
		{"https://a:0", "port"},
		{"https://a:65536", "port"},
		{"https://a:08443", "port"},
		{"https://a:1/v1", "only a host and a port"},
		{"https://a:1?x=1", "only a host and a port"},
		{"https://a:1#f", "only a host and a port"},
		{"https://u@a:1", "only a host and a port"},
		{"https://a b:1", "only a host and a port"},
		{"https://[fe80::1%25lo]:1", "not a URL"},
		{"https://[x::y]:1", ""},
		{"https://[1::2::3]:1", "not a URL"},
	} {
		got, err := ParseURLs(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("ParseURLs(%q) = %q, %v; want an error about %q", tc.in, got, err, tc.why)
		}
	}
}

// FuzzParseURLs: what ParseURLs accepts is a list of canonical,
// distinct controller URLs, which it parses back to itself.
func FuzzParseURLs(f *testing.F) {
	for _, s := range []string{
		"https://a:1", "https://a:1,https://b:2", " https://A:1/ ,https://[::1]:3", "https://a", "http://a:1",
		"https://a:1,https://a:1", "https://a:1/x", "https://[fe80::1%25eth0]:1", ",", "https://a:65535,https://b:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		urls, err := ParseURLs(s)
		if err != nil {
			if urls != nil {
				t.Fatalf("ParseURLs(%q) = %q with error %v, want no URLs", s, urls, err)
			}
			return
		}
		if len(urls) == 0 || len(urls) != strings.Count(s, ",")+1 {
			t.Fatalf("ParseURLs(%q) = %q, want one URL per entry", s, urls)
		}
		for i, u := range urls {
			c, err := CanonicalURL(u)
			if err != nil || c != u {
				t.Fatalf("ParseURLs(%q)[%d] = %q, whose canonical form is %q, %v", s, i, u, c, err)
			}
			if !strings.HasPrefix(u, "https://") || strings.ContainsAny(u[len("https://"):], "/?#@, ") {
				t.Fatalf("ParseURLs(%q)[%d] = %q, not https://HOST:PORT", s, i, u)
			}
			if slices.Contains(urls[:i], u) {
				t.Fatalf("ParseURLs(%q) = %q repeats %q", s, urls, u)
			}
		}
		again, err := ParseURLs(strings.Join(urls, ","))
		if err != nil || !slices.Equal(again, urls) {
			t.Fatalf("ParseURLs(%q) = %q, %v; want %q back", strings.Join(urls, ","), again, err, urls)
		}
	})
}
