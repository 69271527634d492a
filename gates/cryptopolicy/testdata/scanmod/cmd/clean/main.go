// Command clean imports only allowed crypto packages; crypto/tls links
// MD5, SHA-1 and RSA inside the standard library, which is not judged.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
)

func main() { fmt.Println(sha256.Sum256(nil), tls.VersionTLS13) }
