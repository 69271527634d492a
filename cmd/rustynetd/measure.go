package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/rustynet/rustynet/internal/cli"
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

func measureRouteApply(iface string, mtu, routes, reps int, stdout io.Writer) error {
	if routes < 1 || routes > node.MaxBenchRoutes {
		return cli.Usagef("--measure-route-apply %d: want 1 to %d routes", routes, node.MaxBenchRoutes)
	}
	if reps < 1 || reps > 100000 {
		return cli.Usagef("--measure-repetitions %d: want 1 to 100000", reps)
	}
	lat, err := node.MeasureRouteApply(iface, mtu, routes, reps)
	if err != nil {
		return fmt.Errorf("measuring route apply: %w", err)
	}
	rep := RouteApplyReport{Routes: routes, Repetitions: reps, Interface: iface, Block: node.BenchRoutes.String()}
	for _, d := range lat {
		rep.ApplyNS = append(rep.ApplyNS, d.Nanoseconds())
	}
	return json.NewEncoder(stdout).Encode(rep)
}
