package node

// SetRotationHook makes n call f at each step of a key rotation:
// "pending-saved", "sent", "confirmed" and "promoted" (see rotation.go).
// An error from f stands for a crash at that step: the rotation stops
// there and n writes nothing more to its state dir, as a killed process
// would not; stop n and start a new node on the same state dir to see what
// the crash left. At "promoted" f is called with n's lock held: it must
// not call n.
func SetRotationHook(n *Node, f func(step string) error) { n.hook.Store(&f) }

// SetEchoSentHook makes n's Ping call f right after it sends its echo
// request, before it waits for the reply.
func SetEchoSentHook(n *Node, f func()) { n.echoSent.Store(&f) }
