// Command md5 is the module's own package importing a removed algorithm.
package main

import (
	"crypto/md5"
	"fmt"
)

func main() { fmt.Println(md5.Sum(nil)) }
