package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/drill/history"
)

func (a *app) keygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out DIR",
		Short: "Write an ed25519 key pair that signs every run record",
		Long: `Writes a new ed25519 key pair to DIR: ` + chain.PrivateKeyFile + ` (private, mode 0600) and
` + chain.PublicKeyFile + ` (public), both PEM. It never overwrites a key.

Give the private key to the runners (--signing-key or FIREDRILL_SIGNING_KEY): every record they
finish from then on is signed. Give the public key to auditors: 'firedrill history verify
--public-key' then checks every signature. See docs/history.md.`,
		Example: `  firedrill keygen --out /etc/firedrill/keys
  firedrill run --signing-key /etc/firedrill/keys/firedrill-signing.key scenarios/examples/minimal.yaml
  firedrill history verify --public-key /etc/firedrill/keys/firedrill-signing.pub`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("Run 'firedrill keygen --help' for usage.", "keygen needs --out DIR: where to write the key pair")
			}
			priv, pub, err := chain.WriteKeyPair(out)
			if err != nil {
				return err
			}
			pk, err := chain.LoadPublicKey(pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "wrote %s (private, 0600) and %s (public, key %s)\n", priv, pub, chain.Fingerprint(pk))
			fmt.Fprintf(a.out, "sign records with --signing-key %s or FIREDRILL_SIGNING_KEY; keep it secret and back it up\n", priv)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the key pair to (created if missing)")
	return cmd
}

// registerSigningFlag adds --signing-key, which every command that finishes records honours.
func (a *app) registerSigningFlag(pf *pflag.FlagSet) {
	pf.StringVar(&a.signingKey, "signing-key", "", "ed25519 private key (from 'firedrill keygen') that signs every record this command finishes (default: $FIREDRILL_SIGNING_KEY)")
}

// signer loads the signing key named by --signing-key or FIREDRILL_SIGNING_KEY; nil when none is.
func (a *app) signer() (*chain.Signer, error) {
	path := a.signingKey
	if path == "" {
		path = a.getenv("FIREDRILL_SIGNING_KEY")
	}
	if path == "" {
		return nil, nil
	}
	s, err := chain.LoadSigner(path)
	if err != nil {
		return nil, usagef("", "%v", err)
	}
	return s, nil
}

// applySigner makes store sign what it finishes when a signing key is configured.
func (a *app) applySigner(store *history.Store) error {
	s, err := a.signer()
	if err != nil || s == nil {
		return err
	}
	store.SetSigner(s)
	return nil
}
