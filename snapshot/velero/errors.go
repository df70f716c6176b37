package velero

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	// ErrLocationUnavailable: the BackupStorageLocation is missing, not Available or not validated.
	ErrLocationUnavailable = errors.New("backup storage location unavailable")
	// ErrBackupNotFound: no such Backup in Velero's namespace (nor, for a schedule, a usable one).
	ErrBackupNotFound = errors.New("velero backup not found")
	// ErrBackupExpired: the backup's status.expiration has passed; Velero's GC may remove it any time.
	ErrBackupExpired = errors.New("velero backup expired")
	// ErrBackupDeleting: the backup is being deleted (a pending DeleteBackupRequest, or a deletion
	// timestamp).
	ErrBackupDeleting = errors.New("velero backup being deleted")
	// ErrBackupFailed is wrapped by *BackupError: the backup ended Failed, PartiallyFailed or
	// FailedValidation.
	ErrBackupFailed = errors.New("velero backup failed")
	// ErrRestoreFailed is wrapped by *RestoreError: the restore ended Failed, PartiallyFailed or
	// FailedValidation.
	ErrRestoreFailed = errors.New("velero restore failed")
	// ErrNotProcessing is wrapped by *NotProcessingError: the Velero server did not acknowledge a
	// request, so it is most likely not running.
	ErrNotProcessing = errors.New("velero server not processing")
	// ErrNotScratch: a restore target namespace is not one firedrill created for this run.
	ErrNotScratch = errors.New("restore target is not a firedrill scratch namespace")
	// ErrNotOurs: firedrill refuses to delete a Velero object it did not create.
	ErrNotOurs = errors.New("not created by firedrill")
	// ErrNotInStorage: Velero made a download URL but the file is not in object storage (e.g. the
	// results of a backup that never ran).
	ErrNotInStorage = errors.New("file not in backup storage")
	// ErrCorruptContents: the backup's tarball in object storage does not read as one: not gzip, a
	// broken tar stream, an object that is not JSON, or cut short (a connection cut mid-download
	// looks the same).
	ErrCorruptContents = errors.New("backup contents corrupt")
	// ErrUsage: the options asked for something this package refuses or cannot do.
	ErrUsage = errors.New("invalid velero options")
)

// BackupError says how a backup ended badly, with what an operator needs to look further.
type BackupError struct {
	Namespace, Backup string
	Phase             string
	ItemsBackedUp     int
	TotalItems        int
	// Errors and Warnings are Velero's counts; FirstErrors and FirstWarnings the first messages of
	// the backup's results, as "namespace shop: ..." or "velero: ...".
	Errors, Warnings           int
	FirstErrors, FirstWarnings []string
	FailureReason              string
	ValidationErrors           []string
	// ResultsErr says why the messages could not be fetched, when they could not.
	ResultsErr error
}

func (e *BackupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "backup %s/%s ended %s: %d of %d items backed up, %s, %s",
		e.Namespace, e.Backup, e.Phase, e.ItemsBackedUp, e.TotalItems, plural(e.Errors, "error"), plural(e.Warnings, "warning"))
	writeDetails(&b, e.FailureReason, e.ValidationErrors, e.FirstErrors, e.FirstWarnings, e.ResultsErr)
	fmt.Fprintf(&b, " (velero backup describe %s --details; velero backup logs %s)", e.Backup, e.Backup)
	return b.String()
}

// Unwrap gives ErrBackupFailed and, when the messages could not be fetched, why: a Velero server
// that stopped answering is then also ErrNotProcessing.
func (e *BackupError) Unwrap() []error { return unwrapFailure(ErrBackupFailed, e.ResultsErr) }

// RestoreError says how a restore ended badly.
type RestoreError struct {
	Namespace, Restore, Backup string
	Phase                      string
	ItemsRestored, TotalItems  int
	Errors, Warnings           int
	FirstErrors, FirstWarnings []string
	FailureReason              string
	ValidationErrors           []string
	ResultsErr                 error
}

func (e *RestoreError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "restore %s/%s of backup %s ended %s: %d of %d items restored, %s, %s",
		e.Namespace, e.Restore, e.Backup, e.Phase, e.ItemsRestored, e.TotalItems, plural(e.Errors, "error"), plural(e.Warnings, "warning"))
	writeDetails(&b, e.FailureReason, e.ValidationErrors, e.FirstErrors, e.FirstWarnings, e.ResultsErr)
	fmt.Fprintf(&b, " (velero restore describe %s --details; velero restore logs %s)", e.Restore, e.Restore)
	return b.String()
}

// Unwrap gives ErrRestoreFailed and, when the messages could not be fetched, why: a Velero server
// that stopped answering (it may mark a restore Failed as it goes down) is then also
// ErrNotProcessing.
func (e *RestoreError) Unwrap() []error { return unwrapFailure(ErrRestoreFailed, e.ResultsErr) }

func unwrapFailure(sentinel, resultsErr error) []error {
	if resultsErr != nil && errors.Is(resultsErr, ErrNotProcessing) {
		return []error{sentinel, resultsErr}
	}
	return []error{sentinel}
}

func writeDetails(b *strings.Builder, reason string, validation, errs, warns []string, resultsErr error) {
	if reason != "" {
		fmt.Fprintf(b, "; failure reason: %s", reason)
	}
	if len(validation) > 0 {
		fmt.Fprintf(b, "; validation errors: %s", strings.Join(validation, "; "))
	}
	if len(errs) > 0 {
		fmt.Fprintf(b, "; first errors: %s", strings.Join(errs, "; "))
	}
	if len(warns) > 0 {
		fmt.Fprintf(b, "; first warnings: %s", strings.Join(warns, "; "))
	}
	if resultsErr != nil {
		fmt.Fprintf(b, "; messages unavailable: %v", resultsErr)
	}
}

// NotProcessingError: Velero left something untouched and did not acknowledge a DownloadRequest
// either, so the server is most likely down.
type NotProcessingError struct {
	Namespace string
	// What Velero was asked to process: "backups", "restores", "download requests", "deletions".
	What string
	// Detail says what was stuck and for how long.
	Detail string
}

func (e *NotProcessingError) Error() string {
	msg := fmt.Sprintf("Velero server in namespace %s is not processing %s: is it running?", e.Namespace, e.What)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

func (e *NotProcessingError) Unwrap() error { return ErrNotProcessing }

// NotFinishedError: the caller's context ended before Velero finished. It unwraps to the
// context's error, so errors.Is(err, context.DeadlineExceeded) holds.
type NotFinishedError struct {
	Namespace string
	Kind      string // "backup", "restore", "deletion of backup"
	Name      string
	Phase     string
	Done      int
	Total     int
	Elapsed   time.Duration
	// SinceChange is how long the status had not changed when the wait ended.
	SinceChange time.Duration
	// VeleroAlive is true when Velero acknowledged a DownloadRequest during the wait.
	VeleroAlive bool
	Err         error
}

func (e *NotFinishedError) Error() string {
	phase := e.Phase
	if phase == "" {
		phase = "New (not picked up)"
	}
	msg := fmt.Sprintf("%s %s/%s did not finish within %s: phase %s, %d of %d items",
		e.Kind, e.Namespace, e.Name, e.Elapsed.Round(time.Millisecond), phase, e.Done, e.Total)
	if e.SinceChange >= time.Second {
		msg += fmt.Sprintf(", no progress for %s", e.SinceChange.Round(time.Second))
	}
	if e.VeleroAlive {
		msg += "; the Velero server is answering: give it more time or look at its log"
	}
	return msg + ": " + e.Err.Error()
}

func (e *NotFinishedError) Unwrap() error { return e.Err }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
