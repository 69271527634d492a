// Package weak is a third-party package that links MD5.
package weak

import "crypto/md5"

// Sum returns the MD5 of b.
func Sum(b []byte) [md5.Size]byte { return md5.Sum(b) }
