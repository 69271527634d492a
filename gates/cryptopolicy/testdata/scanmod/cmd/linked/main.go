// Command linked links MD5 through a third-party package.
package main

import (
	"fmt"

	"example.com/thirdparty/weak"
)

func main() { fmt.Println(weak.Sum(nil)) }
