// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3's
// etcdmain at the version go.mod names, for the test networks and
// container images that run controller replicas over a real etcd cluster.
// Rustynet does not ship it: operators run their own etcd. It takes etcd's
// flags, unchanged (etcd --help).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
