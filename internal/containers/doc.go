// Package containers runs Rustynet's own binaries in Docker containers, for
// tests and drills that need real processes on a real network: a controller
// that is stopped, killed and restarted with its data intact, nodes that
// register with it over the network, admin and node CLIs run inside the
// containers.
//
// It is built on testcontainers-go and works without any registry:
//
//   - Images are built FROM scratch. Binary compiles a main package of this
//     module statically (CGO_ENABLED=0, -trimpath) once per test process;
//     Image puts binaries into an image that holds nothing else but empty
//     /tmp and /data directories. The tag is a hash of the contents
//     ("rustynet-test/controller:3f0c..."), so an image is built once per
//     set of inputs and reused by later test runs while the binaries do not
//     change. There is no shell in the images: every command is an exec of
//     a binary by its absolute path.
//
//   - The Ryuk reaper, which testcontainers-go normally starts to remove
//     what a crashed test process leaves behind, is an image that would
//     have to be pulled. The package therefore sets
//     TESTCONTAINERS_RYUK_DISABLED=true (unless it is already set) before
//     its first testcontainers-go call. A test process that uses
//     testcontainers-go directly before this package must set it itself.
//
//   - Cleanup is explicit instead: every network and container is removed
//     in the Cleanup of the test (or drill) that created it, containers before their
//     network, and a failed test gets each container's log. Everything
//     carries the label LabelSession with a value unique to the test
//     process, and Remaining lists what of it is still there, so a test (or
//     TestMain) can check that nothing leaked. Images are kept, labelled
//     LabelImage; remove them with
//     `docker image prune -af --filter label=org.rustynet.containers.image`.
//
// Its functions take a T: a test's testing.TB, or a Drill (RunDrill), for
// a gate that runs containers outside go test, with the same cleanup.
//
// Containers reach each other by network alias on their own Docker network
// ("controller", or the node's name) and are reachable from the test process
// only through ports mapped on 127.0.0.1. Every wait is bounded.
//
// The rustynetd and rustynet binaries are built only when a node is
// started, so the controller-only paths work without them.
package containers
