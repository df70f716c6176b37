package etcd

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing n bytes at off of f to disk without waiting for it. It is only a
// hint: the fsync that makes the file durable comes later, so a failure here changes nothing.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
