//go:build !unix

package evidence

// openFlags: os.Root already refuses to leave the bundle, and open checks
// the opened file is the regular file it saw.
const openFlags = 0
