// Command unmapped imports a crypto package the test policy does not map.
package main

import (
	"crypto/sha3"
	"fmt"
)

func main() { fmt.Println(sha3.Sum256(nil)) }
