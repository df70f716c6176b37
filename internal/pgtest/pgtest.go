// Package pgtest starts a real PostgreSQL for tests from the machine's binaries (initdb,
// postgres) on a free loopback port. Tests that use it fail, never skip, when the binaries are
// missing (except under -short, where callers skip themselves).
//
// initdb runs once per PostgreSQL version and user: its output is kept as a template in
// $TMPDIR/firedrill-pgtest and copied for every server, which takes a fraction of initdb's time.
// The servers run with fsync off: a test's data need not survive a power cut, and fsync on a
// shared test machine costs seconds. As root, initdb and postgres (which refuse root) run as the
// user nobody.
//
// CONTRACT (issue 5): the tests of history, service and cmd/firedrill's serve are written against it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startTimeout bounds how long a server may take to accept connections, stopTimeout how long
// a fast shutdown may take before the process group is killed; generous, because the machine
// is shared and a slow start is not what a test is about.
const (
	startTimeout = 2 * time.Minute
	stopTimeout  = time.Minute
)

// Server is one PostgreSQL cluster in a temporary directory.
type Server struct {
	// DSN of the cluster's default database (postgres://...@127.0.0.1:PORT/postgres?sslmode=disable).
	DSN  string
	Port int
	Dir  string // holds data/ and postgres.log

	bin  string // directory of the postgres binaries
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd     // nil while stopped
	done chan struct{} // closed when cmd has exited
	dbs  int           // databases made by NewDatabase, for their names
}

// Start initialises and starts a cluster, stopped by tb.Cleanup. initdb and postgres refuse to
// run as root: as root it runs them as an unprivileged user.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pgtest: the server's %s", tail(filepath.Join(s.Dir, "postgres.log")))
		}
		if err := s.remove(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("t%d_%s", s.dbs, dbName.ReplaceAllString(strings.ToLower(tb.Name()), "_"))
	s.mu.Unlock()
	if len(name) > 63 { // PostgreSQL's identifier limit
		name = name[:63]
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", s.DSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.dsn(name)
}

var dbName = regexp.MustCompile(`[^a-z0-9]+`)

// Stop stops the server (fast shutdown); Restart starts it again on the same port and data.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatal(err)
	}
}

func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.run(); err != nil {
		tb.Fatal(err)
	}
}

func (s *Server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

func start() (*Server, error) {
	bin, err := findBin(os.Getenv("PATH"), "/usr/lib/postgresql/*/bin/initdb")
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(bin, cred)
	if err != nil {
		return nil, err
	}
	// Not a testing TempDir: its parent is 0700 to root, and nobody must get into this one.
	dir, err := os.MkdirTemp("", "firedrill-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: bin, cred: cred}
	if err := s.chown(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := copyTree(tmpl, filepath.Join(dir, "data")); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: copy the initdb template: %w", err)
	}
	// A free port can be taken between asking and binding; try a few.
	for range 5 {
		if s.Port, err = freePort(); err != nil {
			break
		}
		s.DSN = s.dsn("postgres")
		if err = s.run(); err == nil || !strings.Contains(err.Error(), "could not bind") {
			break
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// findBin finds the directory holding initdb and postgres: on PATH, else the newest of the
// Debian-style version directories that glob matches.
func findBin(path, glob string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if isExec(filepath.Join(dir, "initdb")) && isExec(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob(glob)
	for i := len(matches) - 1; i >= 0; i-- { // the newest version sorts last (until PostgreSQL 100)
		if dir := filepath.Dir(matches[i]); isExec(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: PostgreSQL's initdb and postgres are neither on PATH nor in " + filepath.Dir(filepath.Dir(glob)) + ": " +
		"install the server (Debian: apt-get install postgresql) or put its bin directory on PATH; " +
		"tests that need it are skipped only under -short")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// credential returns whom to run the binaries as: nil for the current user, nobody as root.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: false, Groups: []uint32{}}, nil
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	return os.Chown(path, int(s.cred.Uid), int(s.cred.Gid))
}

// command runs a postgres binary as the server's user, in its own process group so that
// killing the group takes every backend with it.
func command(bin string, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

var pgVersion = regexp.MustCompile(`[0-9]+(\.[0-9]+)*`)

var templates sync.Map // template dir -> *sync.Once-guarded result

type templateResult struct {
	once sync.Once
	dir  string
	err  error
}

// template returns a data directory made by initdb, shared by every server of this version
// and user (and kept between test processes, so most runs never call initdb).
func template(bin string, cred *syscall.Credential) (string, error) {
	out, err := command(bin, nil, "postgres", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pgtest: %s/postgres --version: %w", bin, err)
	}
	version := pgVersion.FindString(string(out)) // "postgres (PostgreSQL) 15.18 (Debian ...)"
	uid := os.Geteuid()
	if cred != nil {
		uid = int(cred.Uid)
	}
	root := filepath.Join(os.TempDir(), "firedrill-pgtest")
	// v1: the initdb options below; change it when they change.
	dir := filepath.Join(root, fmt.Sprintf("template-v1-%s-uid%d", version, uid))
	v, _ := templates.LoadOrStore(dir, &templateResult{})
	t := v.(*templateResult)
	t.once.Do(func() {
		t.dir = dir
		t.err = makeTemplate(bin, cred, root, dir)
	})
	return t.dir, t.err
}

func makeTemplate(bin string, cred *syscall.Credential, root, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return nil // only ever renamed into place once complete
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	tmp, err := os.MkdirTemp(root, "initdb-")
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	os.Chmod(tmp, 0o700)
	if cred != nil {
		if err := os.Chown(tmp, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	cmd := command(bin, cred, "initdb", "-D", tmp, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// Another test process may have won the race; its template is as good as ours.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "PG_VERSION")); serr == nil {
			return nil
		}
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// copyTree copies the template, keeping modes and owners (postgres insists that its data
// directory is 0700 and belongs to the user it runs as).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, fi.Mode().Perm()); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		default:
			if err := copyFile(path, target, fi.Mode().Perm()); err != nil {
				return err
			}
		}
		if os.Geteuid() == 0 {
			return os.Lchown(target, int(st.Uid), int(st.Gid))
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts postgres on s.Port and waits until it accepts connections.
func (s *Server) run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: the server is already running")
	}
	logPath := filepath.Join(s.Dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "--- pgtest: starting on port %d at %s\n", s.Port, time.Now().UTC().Format(time.RFC3339))
	// No unix socket: only loopback TCP, so nothing is written outside the directory.
	cmd := command(s.bin, s.cred, "postgres", "-D", filepath.Join(s.Dir, "data"),
		"-p", strconv.Itoa(s.Port), "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // the log says why it ended
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("pgtest: postgres exited at start: %s", tail(logPath))
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("pgtest: postgres did not accept connections within %s: %v\n%s", startTimeout, err, tail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop asks for a fast shutdown (what pg_ctl stop -m fast sends) and kills the process group
// if that takes too long.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		s.cmd = nil
		return nil
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("pgtest: postgres did not stop within %s and was killed: %s", stopTimeout, tail(filepath.Join(s.Dir, "postgres.log")))
	}
}

// kill kills the server's process group and waits for it. Call with s.mu held.
func (s *Server) kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// remove stops the server and deletes its directory.
func (s *Server) remove() error {
	err := s.stop()
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// tail returns the end of the server log, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "log " + path + ":\n" + string(b)
}

var shared struct {
	sync.Mutex
	installed bool
	once      sync.Once
	s         *Server
	err       error
}

// Shared returns the test binary's server, starting it on first use, so that the tests of a
// package share one cluster (each taking a database of its own with NewDatabase). It needs
// Main (or Run) in the package's TestMain, which stops it. Tests must not Stop it.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.Lock()
	installed := shared.installed
	shared.Unlock()
	if !installed {
		tb.Fatal("pgtest.Shared needs `func TestMain(m *testing.M) { pgtest.Main(m) }` in the package, which stops the shared server")
	}
	shared.once.Do(func() { shared.s, shared.err = start() })
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.s
}

// Main runs the package's tests and then stops the shared server.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has more to do: it returns the exit code. The shared
// server's log is kept when a test failed.
func Run(m *testing.M) int {
	shared.Lock()
	shared.installed = true
	shared.Unlock()
	code := m.Run()
	if s := shared.s; s != nil {
		if code != 0 {
			err := s.stop()
			fmt.Fprintf(os.Stderr, "pgtest: shared server's log kept in %s/postgres.log (stop: %v)\n", s.Dir, err)
		} else if err := s.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			code = 1
		}
	}
	return code
}
