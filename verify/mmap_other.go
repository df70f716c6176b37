//go:build !linux

package verify

const snapshotMmapFlags = 0
