// Package velero drives Velero for firedrill's drills: it checks backup storage locations, finds or
// makes backups, reads what they hold, and restores them into scratch namespaces, a second cluster
// or an ephemeral kind cluster, with the isolation of docs/architecture.md#safety-rules applied by
// Velero itself before any object exists.
//
// Everything goes through Velero's custom resources in the Velero namespace of the cluster the
// Client points at; files in object storage (contents, results, resource lists) are fetched through
// DownloadRequests and the signed URLs Velero puts in them, so firedrill needs no bucket
// credentials. Everything firedrill creates there carries the labels LabelManagedBy=firedrill and
// LabelRun=<run id>, and only such objects are ever deleted.
//
// Waits poll Velero's status and report progress; when nothing moves for a while they ask Velero
// to acknowledge a DownloadRequest, so that a Velero server that is not running ends a wait with
// an error naming it instead of a bare timeout.
package velero
