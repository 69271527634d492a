package control

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseURLs parses a comma-separated list of controller URLs (the replicas
// of one controller), each https://HOST:PORT, as rustynetd's --controller
// takes it. Spaces around an entry are ignored; an empty entry, an entry
// that is not such a URL, and an entry listed twice (compared as
// CanonicalURL writes them) are refused. It returns the canonical URLs in
// the order given.
func ParseURLs(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no controller URL: want https://HOST:PORT, or several separated by commas")
	}
	return checkURLs(strings.Split(list, ","))
}

// checkURLs canonicalises urls and refuses an empty list, a bad entry and
// a duplicate.
func checkURLs(urls []string) ([]string, error) {
	if len(urls) == 0 {
		return nil, errors.New("no controller URL: want https://HOST:PORT, or several separated by commas")
	}
	out := make([]string, 0, len(urls))
	seen := make(map[string]int, len(urls))
	for i, raw := range urls {
		s := strings.TrimSpace(raw)
		if s == "" {
			return nil, fmt.Errorf("controller URL %d of %d is empty (a stray comma?)", i+1, len(urls))
		}
		u, err := CanonicalURL(s)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[u]; dup {
			if urls[j] == raw {
				return nil, fmt.Errorf("controller URL %q is listed twice", truncate(s))
			}
			return nil, fmt.Errorf("controller URL %q is listed twice (as %q and %q)", u, truncate(strings.TrimSpace(urls[j])), truncate(s))
		}
		seen[u] = i
		out = append(out, u)
	}
	return out, nil
}

// CanonicalURL checks that s is a controller URL, https://HOST:PORT (a
// trailing slash allowed; no path, query, fragment or user), and returns
// it as the client uses it: the host in lower case, without the slash. A
// URL without a port, which rustynetd accepted before it took replicas,
// stands for port 443.
func CanonicalURL(s string) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("controller URL %q: %s; want https://HOST:PORT", truncate(s), why)
	}
	rest, ok := strings.CutPrefix(s, "https://")
	if !ok {
		return "", bad("not https://")
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#@\\ \t\r\n") {
		return "", bad("only a host and a port may follow https://")
	}
	u, err := url.Parse("https://" + rest)
	if err != nil || u.Host != rest || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" {
		return "", bad("not a URL of a host and a port")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", bad("no host")
	}
	if strings.HasSuffix(rest, ":") {
		return "", bad("an empty port")
	}
	if port == "" {
		port = "443"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return "", bad("the port is not a number from 1 to 65535")
	}
	return "https://" + net.JoinHostPort(strings.ToLower(host), port), nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) <= 100 {
		return s
	}
	return s[:100] + "..."
}
