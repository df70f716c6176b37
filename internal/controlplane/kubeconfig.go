package controlplane

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Credentials authenticate a client: a bearer token, or a client certificate and key.
type Credentials struct {
	Token             string
	CertFile, KeyFile string
}

// WriteKubeconfig writes a kubeconfig for server (trusting caFile) to path and returns the client
// configuration it describes.
func WriteKubeconfig(path, name, server, caFile string, creds Credentials) (*rest.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: creds.Token, ClientCertificate: creds.CertFile, ClientKey: creds.KeyFile}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
}
