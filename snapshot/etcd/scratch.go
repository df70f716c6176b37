package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Scratch is an embedded etcd (go.etcd.io/etcd/server/v3/embed) on free loopback ports serving a
// data directory, usually one Restore wrote. It runs inside this process: a database that makes
// etcd panic while serving takes the process with it, which is why Restore checks the snapshot's
// hash and structure first, and why a drill should Inspect it (which decodes every key) before.
type Scratch struct {
	etcd      *embed.Etcd
	cli       *clientv3.Client
	endpoints []string
	logs      *tailLog

	closeOnce sync.Once
	closeErr  error
}

// scratchStartAttempts bounds the retries when a port picked free is taken before etcd binds it.
const scratchStartAttempts = 5

// StartScratch starts etcd on dataDir as member name (the Name given to Restore) and returns once
// it serves requests, or ctx ends. An empty or missing dataDir starts a new, empty etcd.
//
// It is tuned for a throwaway copy: no fsync (a crash loses nothing that matters), no metrics or
// HTTP gateway, a space quota of 8 GiB or twice the restored database. Its log stays in memory;
// the last lines are attached to start-up errors.
func StartScratch(ctx context.Context, dataDir, name string) (*Scratch, error) {
	if dataDir == "" {
		return nil, errors.New("start scratch etcd: no data directory given")
	}
	if name == "" {
		name = "default"
	}
	var err error
	for range scratchStartAttempts {
		var s *Scratch
		s, err = startScratch(ctx, dataDir, name)
		if err == nil {
			return s, nil
		}
		portTaken := errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
		if !portTaken || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start scratch etcd on %s: %w", dataDir, err)
}

func startScratch(ctx context.Context, dataDir, name string) (*Scratch, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}

	logs := newTailLog(50)
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dataDir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = name + "=" + peer.String()
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logs.logger(zap.InfoLevel))
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	cfg.QuotaBackendBytes = scratchQuota(dataDir)

	// etcd reads the whole key index while starting, on this goroutine; a damaged revision key
	// panics there. guard turns that into an error (the listeners it opened may then stay open
	// until the process ends: etcd only closes them on a returned error).
	var e *embed.Etcd
	err = guard(func() (err error) {
		e, err = embed.StartEtcd(cfg)
		return err
	})
	var crash *errCrashed
	if errors.As(err, &crash) {
		return nil, fmt.Errorf("%w: the restored database: %s", ErrCorrupt, redactData(crash.Error()+logs.suffix(3)))
	}
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, logs.suffix(5))
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd stopped while starting: %w%s", err, logs.suffix(5))
	case <-e.Server.StopNotify():
		e.Close()
		return nil, fmt.Errorf("etcd stopped while starting%s", logs.suffix(5))
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("interrupted while etcd was starting: %w", ctx.Err())
	}

	endpoints := []string{client.String()}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: DefaultDialTimeout, Logger: zap.NewNop()})
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("client of scratch etcd: %w", err)
	}
	return &Scratch{etcd: e, cli: cli, endpoints: endpoints, logs: logs}, nil
}

// Endpoints are the client URLs of the scratch etcd (plain http on 127.0.0.1).
func (s *Scratch) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// LogTail returns up to n of the last lines etcd logged, oldest first: the log stays in memory,
// never on stdout, and is what to show when the scratch etcd misbehaves.
func (s *Scratch) LogTail(n int) []string { return s.logs.last(n) }

// Client is a client of the scratch etcd, closed by Close.
func (s *Scratch) Client() *clientv3.Client { return s.cli }

// Close stops the client and etcd and waits until etcd has released its ports and data
// directory, which it does not remove. Calling it again returns the first result.
func (s *Scratch) Close() error {
	s.closeOnce.Do(func() {
		cerr := s.cli.Close()
		s.etcd.Close() // waits for its servers and goroutines; closes Err()
		var serr error
		for err := range s.etcd.Err() {
			if err != nil && serr == nil {
				serr = err
			}
		}
		s.closeErr = errors.Join(cerr, serr)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("stop scratch etcd: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// freePorts asks the kernel for n free loopback ports. They are free only until someone else
// takes them, hence StartScratch's retries.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		defer l.Close()
	}
	return ports, nil
}

// scratchQuota leaves room above the restored database so that the checks' few writes (a canary,
// a compaction) never trip etcd's NOSPACE alarm.
func scratchQuota(dataDir string) int64 {
	const floor = 8 << 30
	st, err := statDB(dataDir)
	if err != nil || 2*st < floor {
		return floor
	}
	return 2 * st
}

// statDB is the size of the member database in a data directory.
func statDB(dataDir string) (int64, error) {
	st, err := os.Stat(filepath.Join(dataDir, "member", "snap", "db"))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
