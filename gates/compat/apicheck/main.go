// Command apicheck prints, as JSON, what the compat gate judges of the
// control API of the tree it is built from: its capability version, the
// oldest it serves, the versions the support window covers, and where its
// deprecation announcements and the versions it serves disagree with
// policies/compat.yaml (compat.CheckAnnouncements). The gate runs it with
// `go run` in the tree under test, so that it judges that tree's API and
// not the one compiled into the gate's own binary.
//
//	go run ./gates/compat/apicheck [-at RFC3339]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rustynet/rustynet/gates/compat"
)

func main() {
	at := flag.String("at", "", "judge the support window at this time (RFC 3339; default now)")
	flag.Parse()
	now := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			fmt.Fprintf(os.Stderr, "apicheck: -at %q: want an RFC 3339 time (2027-07-01T00:00:00Z): %v\n", *at, err)
			os.Exit(2)
		}
		now = t
	}
	pol, err := compat.Load(".", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apicheck:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(compat.CheckAPI(pol, now)); err != nil {
		fmt.Fprintln(os.Stderr, "apicheck:", err)
		os.Exit(1)
	}
}
