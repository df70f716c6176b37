//go:build unix

package etcd

import (
	"errors"
	"os"
	"syscall"
)

// lockedByOther reports whether another process holds an exclusive bbolt lock on f, as a running
// etcd does on its member/snap/db. bbolt's read-only open waits for that lock without end.
func lockedByOther(f *os.File) bool {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}
