// Package scratch owns the scratch namespaces a Velero drill restores into: it creates them
// isolated (a default-deny NetworkPolicy, a ResourceQuota) and labelled as firedrill's, confirms
// a target is one of them before anything is restored, and deletes only namespaces it made.
//
// Every delete carries the UID and resourceVersion of the namespace as it was checked, so a
// namespace relabelled, or replaced by another of the same name, after the check is not deleted
// on the strength of an old check: it is read and checked again.
package scratch
