package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CA is a certificate authority made for one control plane, so that no two control planes, and
// none and a real cluster, ever share a key.
type CA struct {
	CertFile, KeyFile string
	cert              *x509.Certificate
	key               *ecdsa.PrivateKey
}

// NewCA makes a CA named name and writes it to dir/ca.crt and dir/ca.key.
func NewCA(dir, name string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key"), cert: cert, key: key}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(ca.CertFile, pemBlock("CERTIFICATE", der), 0o600); err != nil {
		return nil, err
	}
	return ca, os.WriteFile(ca.KeyFile, pemBlock("EC PRIVATE KEY", keyDER), 0o600)
}

// CertSpec is what a certificate the CA issues says.
type CertSpec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool // usable as a TLS server certificate
	Client       bool // usable as a TLS client certificate
}

// Issue writes a key and a certificate for spec to dir/name.crt (with the CA appended) and
// dir/name.key.
func (ca *CA) Issue(dir, name string, spec CertSpec) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, append(pemBlock("CERTIFICATE", der), pemBlock("CERTIFICATE", ca.cert.Raw)...), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pemBlock("EC PRIVATE KEY", keyDER), 0o600)
}

// User is an identity the API server accepts by bearer token (--token-auth-file).
type User struct {
	Name   string
	Groups []string
}

// PKIOptions adds to what every control plane gets.
type PKIOptions struct {
	// ServingIPs are more addresses the API server's certificate is valid for (besides loopback
	// and the first address of the service range).
	ServingIPs []net.IP
	// ServiceCIDR is the service range; its first address is the "kubernetes" Service's. Default
	// DefaultServiceCIDR.
	ServiceCIDR string
	// Users get a token each, besides the admin.
	Users []User
}

// PKI holds the paths of the credentials of one control plane: made fresh at every start.
type PKI struct {
	Dir string
	CA  *CA
	// The API server's serving chain; CA.CertFile goes into kubeconfigs.
	ServingCert, ServingKey string
	// Service-account token signing keys.
	SAKey, SAPub string
	// TokenFile is --token-auth-file: the admin (system:masters) and the Users.
	TokenFile  string
	AdminToken string
	// Tokens of the Users, by name.
	Tokens map[string]string
	// KubeletClientCert/Key is how the API server authenticates to kubelets (system:masters).
	KubeletClientCert, KubeletClientKey string
}

// DefaultServiceCIDR is kubeadm's default, so a scratch API server on a restored kubeadm cluster
// finds its "kubernetes" Service inside the range.
const DefaultServiceCIDR = "10.96.0.0/12"

// NewPKI makes a CA, the API server's serving certificate, service-account keys, tokens and the
// API server's kubelet client certificate under dir.
func NewPKI(dir string, opts PKIOptions) (*PKI, error) {
	ca, err := NewCA(dir, "firedrill-ca")
	if err != nil {
		return nil, err
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = DefaultServiceCIDR
	}
	svcIP, err := firstServiceIP(opts.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, CA: ca, SAKey: filepath.Join(dir, "sa.key"), SAPub: filepath.Join(dir, "sa.pub"),
		TokenFile: filepath.Join(dir, "tokens.csv"), Tokens: map[string]string{}}
	p.ServingCert, p.ServingKey, err = ca.Issue(dir, "apiserver", CertSpec{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, svcIP}, opts.ServingIPs...),
		Server:     true,
	})
	if err != nil {
		return nil, err
	}
	p.KubeletClientCert, p.KubeletClientKey, err = ca.Issue(dir, "apiserver-kubelet-client", CertSpec{
		CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true,
	})
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.SAKey, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.SAPub, pemBlock("PUBLIC KEY", saPub), 0o600); err != nil {
		return nil, err
	}

	// token,user,uid,"group,group": the admin is in system:masters, which RBAC lets do anything.
	p.AdminToken = randomToken()
	var tokens strings.Builder
	fmt.Fprintf(&tokens, "%s,firedrill-admin,firedrill-admin,\"system:masters\"\n", p.AdminToken)
	for _, u := range opts.Users {
		tok := randomToken()
		p.Tokens[u.Name] = tok
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", tok, u.Name, u.Name, strings.Join(u.Groups, ","))
	}
	if err := os.WriteFile(p.TokenFile, []byte(tokens.String()), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// firstServiceIP is the address the API server gives the "kubernetes" Service: the range's first.
func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("service range %q: %w", cidr, err)
	}
	ip := n.IP.To4()
	if ip == nil {
		ip = n.IP.To16()
	}
	ip = append(net.IP(nil), ip...)
	ip[len(ip)-1]++
	return ip, nil
}

func randomToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}
