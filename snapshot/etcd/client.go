package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"
)

// TLSFiles names PEM files for a TLS connection to etcd. CAFile empty: the system's roots.
// CertFile and KeyFile go together; they are needed when etcd checks client certificates.
type TLSFiles struct{ CAFile, CertFile, KeyFile string }

// DefaultDialTimeout bounds connecting to one endpoint when no timeout is given.
const DefaultDialTimeout = 5 * time.Second

// NewClient connects to the endpoints (TLS when given) and returns once one of them answered a
// status request within dialTimeout (0: DefaultDialTimeout), so that a wrong address or
// certificate shows up here rather than at the first request. When none answers the error is an
// *EndpointsError naming each endpoint and why.
func NewClient(endpoints []string, tls *TLSFiles, dialTimeout time.Duration) (*clientv3.Client, error) {
	cfg, err := clientConfig(endpoints, tls, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	if err := probeAny(cfg); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

// probeAny probes every endpoint at once, each with a client of its own (a shared client would
// report one reason for all), and returns nil as soon as one answers.
func probeAny(cfg clientv3.Config) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		go func() {
			one := cfg
			one.Endpoints = []string{ep}
			cli, err := clientv3.New(one)
			if err == nil {
				err = probe(ctx, cli, ep, cfg.DialTimeout)
				cli.Close()
			}
			results <- result{i, err}
		}()
	}
	errs := make([]error, len(cfg.Endpoints))
	for range cfg.Endpoints {
		r := <-results
		if r.err == nil {
			return nil // the others end with ctx
		}
		errs[r.i] = r.err
	}
	return &EndpointsError{Op: "connect", Endpoints: cfg.Endpoints, Errs: errs}
}

// clientConfig is the configuration of every client this package makes: quiet (the client's own
// logger warns on stderr about every retry) and bounded in how long it waits for a connection.
func clientConfig(endpoints []string, tlsFiles *TLSFiles, dialTimeout time.Duration) (clientv3.Config, error) {
	if len(endpoints) == 0 {
		return clientv3.Config{}, errors.New("no etcd endpoints given: name at least one client URL (https://10.0.0.10:2379)")
	}
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
	}
	if tlsFiles != nil {
		tc, err := tlsFiles.clientConfig()
		if err != nil {
			return clientv3.Config{}, err
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

func (f *TLSFiles) clientConfig() (*tls.Config, error) {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, fmt.Errorf("etcd TLS: certificate %q and key %q must be given together", f.CertFile, f.KeyFile)
	}
	info := transport.TLSInfo{CertFile: f.CertFile, KeyFile: f.KeyFile, TrustedCAFile: f.CAFile}
	tc, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS: load CA %q, certificate %q, key %q: %w", f.CAFile, f.CertFile, f.KeyFile, err)
	}
	return tc, nil
}

// probe asks the endpoint of a one-endpoint client for its status within dialTimeout. It calls the
// gRPC stub directly, without clientv3's wrapper: that one waits for a connection until the
// deadline whatever happens (gRPC's wait-for-ready) and then replaces the error with the bare
// context error, so a refused connection would take the whole timeout and an x509 problem would
// read "context deadline exceeded". The stub fails at once with gRPC's reason.
func probe(ctx context.Context, cli *clientv3.Client, endpoint string, dialTimeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	_, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &pb.StatusRequest{})
	if err == nil {
		return nil
	}
	msg := err.Error()
	if s, ok := status.FromError(err); ok {
		msg = s.Message()
	}
	msg = strings.TrimPrefix(msg, "latest balancer error: ")
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %v: %s%s", dialTimeout, msg, tlsHint(endpoint, msg))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s%s", msg, tlsHint(endpoint, msg))
}

// tlsHint adds what to do when an error looks like a TLS problem, which gRPC reports as a
// connection error deep inside its message. A server that rejects a client certificate may just
// close the connection (TLS 1.3 sends its alert after the client's handshake is done), so on https
// a connection closed early counts too.
func tlsHint(endpoint, msg string) string {
	closed := strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF")
	switch {
	case strings.HasPrefix(endpoint, "https://") && closed:
		return " (TLS: the server closed the connection during the handshake; it may reject the client certificate: check the certificate and key are issued by the CA etcd trusts (--trusted-ca-file))"
	case strings.Contains(msg, "x509:"), strings.Contains(msg, "certificate"):
		return " (TLS: check the CA file matches the server's certificate and that a client certificate and key are given when etcd requires them)"
	case strings.Contains(msg, "tls:"), strings.Contains(msg, "handshake"):
		return " (TLS handshake failed: use https:// with the CA, certificate and key files for a TLS endpoint, http:// for a plain one)"
	}
	return ""
}
