// Package etcd takes, finds, inspects and restores etcd v3 snapshots, and serves a restored data
// directory from an embedded etcd on loopback.
//
// Everything here works on files whose integrity it can prove: Take only renames a snapshot into
// place once etcd's appended SHA-256 matched, FromS3 only renames a download once every byte
// arrived, Inspect reports the hash and bbolt's consistency check, and Restore verifies the hash
// before it writes a data directory and removes what it wrote when anything fails.
//
// Snapshots hold every Secret of the cluster: files are created with mode 0600.
package etcd
