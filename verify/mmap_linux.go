package verify

import "syscall"

// snapshotMmapFlags: map every page of the snapshot file at once; the walk reads nearly all of
// them, and one populating mmap costs less than a fault per page.
const snapshotMmapFlags = syscall.MAP_POPULATE
