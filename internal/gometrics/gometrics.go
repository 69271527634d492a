// Package gometrics is the Go runtime collector the daemons register.
package gometrics

import (
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Collector is client_golang's Go collector (go_goroutines, go_memstats_*
// and the rest) with one runtime metric more: go_gc_heap_live_bytes, the
// heap the last GC found live. The heap in use and RSS also carry the
// garbage of the current GC cycle; the live heap is what grows when a
// daemon leaks, and what the soak gate bounds.
func Collector() prometheus.Collector {
	return collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)}))
}
