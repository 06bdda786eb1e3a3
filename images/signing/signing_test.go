package signing_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/goldcast/goldcast/images/signing"
)

func digestOf(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func mustKey(t *testing.T, dir, name string) (string, ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	path := filepath.Join(dir, name)
	pub, err := signing.GenerateKey(path)
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", path, err)
	}
	priv, err := signing.LoadPrivateKey(path)
	if err != nil {
		t.Fatalf("LoadPrivateKey(%s): %v", path, err)
	}
	return path, pub, priv
}

func TestGenerateKey(t *testing.T) {
	dir := t.TempDir()
	path, pub, priv := mustKey(t, dir, "key")

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %04o, want 0600", st.Mode().Perm())
	}
	pubSt, err := os.Stat(path + ".pub")
	if err != nil {
		t.Fatalf("no public key file: %v", err)
	}
	if pubSt.Mode().Perm()&0o077 == 0 {
		t.Errorf("public key mode %04o is not readable by others", pubSt.Mode().Perm())
	}
	if !pub.Equal(priv.Public()) {
		t.Errorf("loaded private key does not match the returned public key")
	}
	fromPub, err := signing.LoadPublicKey(path + ".pub")
	if err != nil {
		t.Fatalf("LoadPublicKey(.pub): %v", err)
	}
	if !pub.Equal(fromPub) {
		t.Errorf("public key file holds another key")
	}
	fromPriv, err := signing.LoadPublicKey(path)
	if err != nil {
		t.Fatalf("LoadPublicKey(private key file): %v", err)
	}
	if !pub.Equal(fromPriv) {
		t.Errorf("LoadPublicKey(private key file) returned another key")
	}
	// The files are what openssl expects.
	raw, _ := os.ReadFile(path)
	if b, _ := pem.Decode(raw); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("private key file is not a PRIVATE KEY PEM block:\n%s", raw)
	}
	raw, _ = os.ReadFile(path + ".pub")
	if b, _ := pem.Decode(raw); b == nil || b.Type != "PUBLIC KEY" {
		t.Errorf("public key file is not a PUBLIC KEY PEM block:\n%s", raw)
	}

	// No overwrite, and the old key survives.
	before, _ := os.ReadFile(path)
	if _, err := signing.GenerateKey(path); !errors.Is(err, os.ErrExist) {
		t.Errorf("GenerateKey over an existing key = %v, want ErrExist", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("existing private key was overwritten")
	}

	// Only the .pub exists: fail and leave no private key behind.
	lone := filepath.Join(dir, "lone")
	if err := os.WriteFile(lone+".pub", []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.GenerateKey(lone); !errors.Is(err, os.ErrExist) {
		t.Errorf("GenerateKey with an existing .pub = %v, want ErrExist", err)
	}
	if _, err := os.Lstat(lone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private key left behind after failing on .pub: %v", err)
	}
	if got, _ := os.ReadFile(lone + ".pub"); string(got) != "keep" {
		t.Errorf("existing .pub overwritten: %q", got)
	}

	if _, err := signing.GenerateKey(filepath.Join(dir, "no/such/dir/key")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("GenerateKey in a missing dir = %v, want ENOENT", err)
	}
}

func TestKeyID(t *testing.T) {
	pub := ed25519.PublicKey(bytes.Repeat([]byte{7}, ed25519.PublicKeySize))
	s := sha256.Sum256(pub)
	if got, want := signing.KeyID(pub), hex.EncodeToString(s[:8]); got != want {
		t.Errorf("KeyID = %q, want %q", got, want)
	}
	other := ed25519.PublicKey(bytes.Repeat([]byte{8}, ed25519.PublicKeySize))
	if signing.KeyID(pub) == signing.KeyID(other) {
		t.Errorf("two keys share a key id")
	}
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	_, pub, priv := mustKey(t, dir, "a")
	_, otherPub, otherPriv := mustKey(t, dir, "b")
	digest := digestOf("manifest one")
	sig, err := signing.Sign(priv, digest)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if sig.KeyID != signing.KeyID(pub) || sig.Digest != digest {
		t.Errorf("Sign = %+v, want key %s digest %s", sig, signing.KeyID(pub), digest)
	}
	otherSig, err := signing.Sign(otherPriv, digest)
	if err != nil {
		t.Fatal(err)
	}

	tamper := func(f func(s *signing.Signature)) *signing.Signature {
		c := *sig
		f(&c)
		return &c
	}
	flipped := func() string {
		raw, _ := base64.StdEncoding.DecodeString(sig.Value)
		raw[10] ^= 1
		return base64.StdEncoding.EncodeToString(raw)
	}()

	tests := []struct {
		name   string
		pub    ed25519.PublicKey
		digest string
		sig    *signing.Signature
		wants  []string // substrings of the error; nil means success
	}{
		{"ok", pub, digest, sig, nil},
		{"other key signs too", otherPub, digest, otherSig, nil},
		{"wrong key", otherPub, digest, sig, []string{"signed by key " + signing.KeyID(pub), "given key " + signing.KeyID(otherPub)}},
		{"modified manifest", pub, digestOf("manifest two"), sig, []string{"modified after signing", digest[:16], digestOf("manifest two")[:16]}},
		{"nil signature", pub, digest, nil, []string{"not signed"}},
		{"flipped signature bit", pub, digest, tamper(func(s *signing.Signature) { s.Value = flipped }), []string{"does not verify"}},
		{"signature not base64", pub, digest, tamper(func(s *signing.Signature) { s.Value = "!!!" }), []string{"does not verify"}},
		{"key id forged to the verifier's", pub, digest, tamper(func(s *signing.Signature) { s.Value = otherSig.Value }), []string{"does not verify"}},
		{"digest in the signature edited", pub, digestOf("manifest two"), tamper(func(s *signing.Signature) { s.Digest = digestOf("manifest two") }), []string{"does not verify"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := signing.Verify(tt.pub, tt.digest, tt.sig)
			if tt.wants == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify succeeded")
			}
			if !errors.Is(err, signing.ErrBadSignature) {
				t.Errorf("error %q does not wrap ErrBadSignature", err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSignBadDigest(t *testing.T) {
	_, _, priv := mustKey(t, t.TempDir(), "k")
	for _, d := range []string{"", "abc", digestOf("x")[:62], strings.Repeat("z", 64), digestOf("x") + "00"} {
		if sig, err := signing.Sign(priv, d); err == nil {
			t.Errorf("Sign(%q) = %+v, want error", d, sig)
		}
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	path, _, _ := mustKey(t, dir, "good")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, _ := os.ReadFile(path)
	goodPub, _ := os.ReadFile(path + ".pub")

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecPriv, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)

	corrupt := bytes.Replace(good, []byte("\n"), []byte("\n!!!!"), 2) // base64 body broken
	truncatedDER := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: func() []byte {
		b, _ := pem.Decode(good)
		return b.Bytes[:len(b.Bytes)-5]
	}()})
	garbagePub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("not DER")})

	tests := []struct {
		name     string
		file     string
		loadPriv string // error substring from LoadPrivateKey; "" means it must succeed
		loadPub  string // error substring from LoadPublicKey; "" means it must succeed
	}{
		{"good private", path, "", ""},
		{"good public", path + ".pub", `no "PRIVATE KEY" PEM block`, ""},
		{"missing", filepath.Join(dir, "missing"), "read key", "read key"},
		{"not PEM", write("text", []byte("hello\n")), `no "PRIVATE KEY" PEM block`, "no PEM block"},
		{"empty", write("empty", nil), `no "PRIVATE KEY" PEM block`, "no PEM block"},
		{"corrupted base64", write("corrupt", corrupt), `no "PRIVATE KEY" PEM block`, "no PEM block"},
		{"truncated DER", write("trunc", truncatedDER), "parse private key", "parse private key"},
		{"garbage public DER", write("garbage.pub", garbagePub), `no "PRIVATE KEY" PEM block`, "parse public key"},
		{"certificate block", write("cert", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), `no "PRIVATE KEY" PEM block`, `PEM block "CERTIFICATE" is not a key`},
		{"ECDSA private", write("ec", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecPriv})), "is not an Ed25519 key", "is not an Ed25519 key"},
		{"ECDSA public", write("ec.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub})), `no "PRIVATE KEY" PEM block`, "is not an Ed25519 key"},
		{"public then private", write("both", append(append([]byte{}, goodPub...), good...)), `no "PRIVATE KEY" PEM block`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v", what, err)
				case want != "" && err == nil:
					t.Errorf("%s succeeded, want error containing %q", what, want)
				case want != "" && !strings.Contains(err.Error(), want):
					t.Errorf("%s error %q does not contain %q", what, err, want)
				}
			}
			_, err := signing.LoadPrivateKey(tt.file)
			check("LoadPrivateKey", err, tt.loadPriv)
			_, err = signing.LoadPublicKey(tt.file)
			check("LoadPublicKey", err, tt.loadPub)
		})
	}
}

func TestMarshalUnmarshal(t *testing.T) {
	_, _, priv := mustKey(t, t.TempDir(), "k")
	sig, err := signing.Sign(priv, digestOf("m"))
	if err != nil {
		t.Fatal(err)
	}
	b := sig.Marshal()
	if !bytes.HasSuffix(b, []byte("}\n")) || !bytes.Contains(b, []byte(`"key_id":"`+sig.KeyID+`"`)) ||
		!bytes.Contains(b, []byte(`"signature":"`)) || !bytes.Contains(b, []byte(`"digest":"`+sig.Digest+`"`)) {
		t.Errorf("Marshal = %s", b)
	}
	got, err := signing.Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if d := cmp.Diff(sig, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	if err := signing.Verify(priv.Public().(ed25519.PublicKey), digestOf("m"), got); err != nil {
		t.Errorf("Verify(unmarshalled) = %v", err)
	}

	bad := []struct {
		name, in, want string
	}{
		{"not json", "signature", "decode signature"},
		{"truncated", string(b[:len(b)/2]), "decode signature"},
		{"no digest", `{"key_id":"x","signature":"AA=="}`, "missing digest or signature"},
		{"no value", `{"key_id":"x","digest":"` + digestOf("m") + `"}`, "missing digest or signature"},
		{"empty object", `{}`, "missing digest or signature"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s, err := signing.Unmarshal([]byte(tt.in))
			if err == nil {
				t.Fatalf("Unmarshal(%q) = %+v, want error", tt.in, s)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}
