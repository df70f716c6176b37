// Command firedrill runs disaster-recovery drills for Kubernetes: it restores etcd snapshots and
// Velero backups somewhere harmless, checks that what came back works, and records the evidence.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

func main() { os.Exit(run()) }

// errInterrupted is the cause of the context a signal cancels.
var errInterrupted = errors.New("interrupted")

func run() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// The first signal cancels the work; cleanup still runs, on its own clock. A second one exits
	// at once, for a person who would rather clean up by hand than wait.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "\nfiredrill: %v: stopping; cleanup runs first (send it again to exit at once)\n", s)
		cancel(errInterrupted)
		<-sig
		os.Exit(exitInterrupted)
	}()
	quietLibraries()
	a := newApp(os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	a.prog = programName(os.Args[0])
	return execute(ctx, a, os.Args[1:])
}

// quietLibraries keeps client-go's and the apiserver libraries' log lines (deprecation warnings
// of the APIs a check lists, retries) off the terminal: firedrill reports what matters itself.
func quietLibraries() {
	klog.SetLogger(logr.Discard())
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
}
