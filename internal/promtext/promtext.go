// Package promtext reads samples from a Prometheus text exposition (a
// /metrics endpoint), for the tests and gates that check a daemon's
// metrics without running a Prometheus.
package promtext

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxExposition bounds how much of an exposition is read.
const maxExposition = 8 << 20

// Read reads several samples from one scrape of url. Each is named as the
// exposition writes it, labels included (`name{label="value"}`); a
// missing one is an error. hc nil is http.DefaultClient.
func Read(ctx context.Context, hc *http.Client, url string, series ...string) (map[string]float64, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxExposition))
	if err != nil {
		return nil, err
	}
	return Parse(string(raw), series...)
}

// Parse finds the named samples in an exposition's text.
func Parse(text string, series ...string) (map[string]float64, error) {
	out := map[string]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		for _, name := range series {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				// A sample may carry a timestamp after its value.
				v, _, _ = strings.Cut(strings.TrimSpace(v), " ")
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				out[name] = f
			}
		}
	}
	for _, name := range series {
		if _, ok := out[name]; !ok {
			return nil, fmt.Errorf("no %s in the metrics", name)
		}
	}
	return out, nil
}

// One reads a single sample from url (see Read).
func One(ctx context.Context, hc *http.Client, url, series string) (float64, error) {
	vs, err := Read(ctx, hc, url, series)
	if err != nil {
		return 0, err
	}
	return vs[series], nil
}
