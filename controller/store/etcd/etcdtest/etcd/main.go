// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3's
// etcdmain at the version go.mod names, for the tests that run controller
// replicas over a cluster of real etcd processes (etcdtest.Build). It
// lives here, not under cmd/, because Rustynet does not ship it (operators
// run their own etcd), so the crypto-policy gate's scan of the shipped
// binaries leaves it out. It takes etcd's flags, unchanged (etcd --help).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
