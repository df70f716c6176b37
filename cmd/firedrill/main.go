// Command firedrill runs disaster-recovery drills for Kubernetes: it restores etcd snapshots and
// Velero backups somewhere harmless, checks that what came back works, and records the evidence.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, newApp(os.Stdin, os.Stdout, os.Stderr, os.Getenv), os.Args[1:])
}
