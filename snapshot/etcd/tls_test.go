package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// An etcd that serves TLS and requires client certificates: Take with the CA, certificate and key
// works; without them, or without the client certificate, it fails naming TLS as the problem.
func TestTakeTLS(t *testing.T) {
	dir := t.TempDir()
	pki := writeTestPKI(t, dir)
	src := startTestEtcd(t, func(cfg *embed.Config) {
		u := url.URL{Scheme: "https", Host: cfg.ListenClientUrls[0].Host}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{u}, []url.URL{u}
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile: pki.serverCert, KeyFile: pki.serverKey, TrustedCAFile: pki.ca, ClientCertAuth: true,
		}
	})
	if !strings.HasPrefix(src.endpoint, "https://") {
		t.Fatalf("endpoint %s is not https", src.endpoint)
	}
	full := &etcd.TLSFiles{CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey}

	cli, err := etcd.NewClient([]string{src.endpoint}, full, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), "/tls/key", "value"); err != nil {
		t.Fatal(err)
	}

	out := t.TempDir()
	take := func(files *etcd.TLSFiles) (*etcd.Snapshot, error) {
		return etcd.Take(context.Background(), etcd.TakeOptions{
			Endpoints: []string{src.endpoint}, TLS: files, DialTimeout: 3 * time.Second,
			Path: filepath.Join(out, "etcd.db"),
		})
	}
	snap, err := take(full)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := etcd.Inspect(snap.Path); err != nil || r.Err() != nil {
		t.Fatalf("inspect: %v %v", err, r.Err())
	}

	// A rejected client certificate shows as the server's alert or as a closed connection,
	// depending on timing; either way the message must point at the certificate.
	for _, tc := range []struct {
		name  string
		files *etcd.TLSFiles
		want  string
	}{
		{"no TLS files", nil, "x509"},
		{"CA but no client certificate", &etcd.TLSFiles{CAFile: pki.ca}, "certificate"},
		{"client certificate of another CA", &etcd.TLSFiles{CAFile: pki.ca, CertFile: pki.strangerCert, KeyFile: pki.strangerKey}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := take(tc.files)
			if !errors.Is(err, etcd.ErrUnreachable) {
				t.Fatalf("err = %v, want ErrUnreachable", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "TLS") {
				t.Errorf("message %q does not name the TLS problem (%q)", err, tc.want)
			}
			t.Log(err)
		})
	}
	if names := dirNames(t, out); len(names) != 1 {
		t.Errorf("output directory holds %v, want the one good snapshot", names)
	}
	if _, err := etcd.NewClient([]string{src.endpoint}, &etcd.TLSFiles{CAFile: filepath.Join(dir, "missing.pem")}, time.Second); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing CA file: err = %v", err)
	}
}

type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey, strangerCert, strangerKey string
}

// writeTestPKI writes a CA, a server certificate for 127.0.0.1, a client certificate of that CA
// and one of an unrelated CA.
func writeTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, caCert := newCA(t, "firedrill test CA")
	otherKey, otherCert := newCA(t, "stranger CA")
	p := testPKI{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.ca, "CERTIFICATE", caCert.Raw)
	p.serverCert, p.serverKey = issue(t, dir, "server", caKey, caCert, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue(t, dir, "client", caKey, caCert, x509.ExtKeyUsageClientAuth)
	p.strangerCert, p.strangerKey = issue(t, dir, "stranger", otherKey, otherCert, x509.ExtKeyUsageClientAuth)
	return p
}

func newCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func issue(t *testing.T, dir, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}
