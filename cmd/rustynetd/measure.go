package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/rustynet/rustynet/node"
)

// RouteApplyReport is what --measure-route-apply prints: one JSON object
// on stdout.
type RouteApplyReport struct {
	Routes      int    `json:"routes"`
	Repetitions int    `json:"repetitions"`
	Interface   string `json:"interface"`
	Block       string `json:"block"`
	// ApplyNS is each repetition's time to install the routes, in
	// nanoseconds, in the order measured.
	ApplyNS []int64 `json:"apply_ns"`
}

func measureRouteApply(iface string, mtu, routes, reps int, stdout, stderr io.Writer) int {
	if routes < 1 || routes > node.MaxBenchRoutes {
		fmt.Fprintf(stderr, "rustynetd: --measure-route-apply %d: want 1 to %d routes\n", routes, node.MaxBenchRoutes)
		return 2
	}
	if reps < 1 || reps > 100000 {
		fmt.Fprintf(stderr, "rustynetd: --measure-repetitions %d: want 1 to 100000\n", reps)
		return 2
	}
	lat, err := node.MeasureRouteApply(iface, mtu, routes, reps)
	if err != nil {
		fmt.Fprintf(stderr, "rustynetd: measuring route apply: %v\n", err)
		return 1
	}
	rep := RouteApplyReport{Routes: routes, Repetitions: reps, Interface: iface, Block: node.BenchRoutes.String()}
	for _, d := range lat {
		rep.ApplyNS = append(rep.ApplyNS, d.Nanoseconds())
	}
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		fmt.Fprintf(stderr, "rustynetd: %v\n", err)
		return 1
	}
	return 0
}
