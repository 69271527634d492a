//go:build unix

package evidence

import "syscall"

// openFlags open a bundle's file without following a symbolic link and
// without waiting on a named pipe.
const openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK
