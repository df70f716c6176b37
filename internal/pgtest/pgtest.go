// Package pgtest starts a real PostgreSQL for tests from the machine's binaries (initdb,
// pg_ctl, postgres) on a free loopback port. Tests that use it fail, never skip, when the
// binaries are missing (except under -short, where callers skip themselves).
//
// CONTRACT (issue 5): history's tests and cmd/firedrill's serve tests are written against it.
package pgtest

import "testing"

// Server is one PostgreSQL cluster in a temporary directory.
type Server struct {
	// DSN of the cluster's default database (postgres://...@127.0.0.1:PORT/postgres?sslmode=disable).
	DSN  string
	Port int
	Dir  string
}

// Start initialises and starts a cluster, stopped by tb.Cleanup. initdb and postgres refuse to
// run as root: as root it runs them as an unprivileged user.
func Start(tb testing.TB) *Server { panic("not implemented") }

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(tb testing.TB) string { panic("not implemented") }

// Stop stops the server (fast shutdown); Restart starts it again on the same port and data.
func (s *Server) Stop(tb testing.TB)    { panic("not implemented") }
func (s *Server) Restart(tb testing.TB) { panic("not implemented") }
