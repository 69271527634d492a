// Package testbed builds multi-host test networks out of Linux network
// namespaces, for end-to-end tests of the mesh: the node agent, WireGuard and
// the routes it installs run in real kernels' network stacks, one stack per
// host, all on one machine.
//
// A Network is one "switch" namespace holding a Linux bridge (br0) and
// Options.Hosts host namespaces, each with a veth eth0 whose peer is a port of
// that bridge, an address from the network's subnet and loopback up:
//
//	rntb-1a2b3c4d-h0      rntb-1a2b3c4d-sw      rntb-1a2b3c4d-h1
//	  lo, eth0 ---------- veth  br0  veth ---------- eth0, lo
//
// # Why a switch namespace
//
// The bridge could live in the root namespace, as it does under a container
// runtime, but then every test network would add a bridge, veth ends and
// perhaps addresses and routes to the machine running the tests: they could
// collide with its real networks, with Docker's, or with a parallel test, and
// a crashed test would leave them behind in the namespace everyone uses. In a
// namespace of its own the bridge can always be called br0, the host-side veth
// ends never appear in `ip link` on the machine, and deleting that namespace
// removes the bridge and every port at once. Nothing in this package adds an
// address, route or link to the root namespace; the switch has no address, so
// hosts reach only each other (and their own loopback).
//
// # How the CNI plugins are invoked
//
// Interfaces and addresses are set up by the real CNI bridge plugin with
// host-local IPAM, driven through libcni exactly as a container runtime would:
// the host namespace is the "container" (CNI_NETNS) and eth0 the interface
// name. The plugin binaries come from the module's tool dependencies (so
// their version is go.mod's) and are built with `go build` once per test
// process into rustynet/testbed/cni under os.UserCacheDir (~/.cache), which
// needs the go command and a working directory inside the module, as under
// `go test`.
//
// The bridge plugin creates the bridge and the host side of the veth in its
// own network namespace, the runtime's "host" namespace. To make that the
// switch, libcni is given an invoke.Exec (switchExec) that starts the plugin
// from an OS thread locked into the switch namespace (pkg/ns WithNetNSPath
// around libcni's own RawExec): Linux namespaces belong to threads, and Go's
// fork/exec clones the calling thread, so the plugin process, and the
// host-local IPAM plugin it starts in turn, begin life in the switch
// namespace. This needs no helper binary (nsenter or `ip netns exec`) and
// keeps libcni's error decoding and retries. libcni's result cache and
// host-local's allocations go to a per-network temporary directory rather
// than /var/lib/cni.
//
// # Lifetime
//
// New registers teardown with t.Cleanup step by step as it builds, so the
// steps run in reverse order even when the test fails or New itself fails
// half way: CNI DEL for each host (deletes its veth, releases its address),
// then its namespace, last the switch namespace (which takes the bridge with
// it). Namespaces are bind mounts under /var/run/netns named
// rntb-<random>-h<i> and rntb-<random>-sw, so `ip netns exec NAME ...` works
// while a test runs. A socket or process still open inside a host keeps that
// namespace's kernel state alive after the mount is gone (but not its veth,
// which CNI DEL removes), so tests close what they open.
//
// Everything needs root; New calls require.Root. Impair needs the kernel's
// sch_netem for delay, jitter and loss and sch_tbf for a rate alone; Iperf3
// needs the iperf3 command.
package testbed
