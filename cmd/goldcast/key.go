package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/goldcast/goldcast/images/signing"
)

func newKeyCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage Ed25519 signing keys",
	}
	var out string
	gen := &cobra.Command{
		Use:   "generate --out KEY",
		Short: "Create a key pair: KEY (private, mode 0600) and KEY.pub",
		Long: `Writes a new Ed25519 private key (PEM, PKCS#8) to KEY and its public key
(PEM, PKIX) to KEY.pub. Neither file is overwritten. Sign versions with
"goldcast image sign NAME --key KEY"; give KEY.pub to whoever verifies.`,
		Example: "  goldcast key generate --out /etc/goldcast/image.key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out KEY is required")
			}
			pub, err := signing.GenerateKey(out)
			if err != nil {
				return err
			}
			a.printf("wrote %s and %s.pub (key id %s)\n", out, out, signing.KeyID(pub))
			return nil
		},
	}
	gen.Flags().StringVarP(&out, "out", "o", "", "private key path; the public key goes to PATH.pub (required)")
	cmd.AddCommand(gen)
	return cmd
}
