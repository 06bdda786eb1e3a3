// Package signing makes image versions trustworthy: Ed25519 keys stored as
// PEM (PKCS#8 private, PKIX public, readable by openssl), and detached
// signatures over a manifest digest.
package signing

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Signature is a detached signature over a manifest digest.
type Signature struct {
	// KeyID is the fingerprint of the public key (see KeyID).
	KeyID string `json:"key_id"`
	// Digest is the hex manifest digest that was signed.
	Digest string `json:"digest"`
	// Value is the Ed25519 signature, base64.
	Value string `json:"signature"`
}

// ErrBadSignature reports a signature that does not verify.
var ErrBadSignature = errors.New("bad signature")

// KeyID returns a short fingerprint of a public key: the first 16 hex
// digits of the sha256 of its raw bytes.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// GenerateKey writes a new key pair: the private key to path (mode 0600)
// and the public key to path+".pub". It refuses to overwrite either.
func GenerateKey(path string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(path+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(path)
		return nil, err
	}
	return pub, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key %q: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %q: %w", path, err)
	}
	return nil
}

// LoadPrivateKey reads a PEM PKCS#8 Ed25519 private key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key %q: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key %q: %T is not an Ed25519 key", path, k)
	}
	return priv, nil
}

// LoadPublicKey reads a PEM PKIX Ed25519 public key. A private key file is
// accepted too (its public half is used).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %q: %w", path, err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("key %q: no PEM block", path)
	}
	switch b.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key %q: %w", path, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key %q: %T is not an Ed25519 key", path, k)
		}
		return pub, nil
	case "PRIVATE KEY":
		priv, err := LoadPrivateKey(path)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("key %q: PEM block %q is not a key", path, b.Type)
}

func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key %q: %w", path, err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != typ {
		return nil, fmt.Errorf("key %q: no %q PEM block", path, typ)
	}
	return b.Bytes, nil
}

// Sign signs a hex manifest digest.
func Sign(priv ed25519.PrivateKey, digest string) (*Signature, error) {
	raw, err := hex.DecodeString(digest)
	if err != nil || len(raw) != sha256.Size {
		return nil, fmt.Errorf("sign: %q is not a sha256 digest", digest)
	}
	return &Signature{
		KeyID:  KeyID(priv.Public().(ed25519.PublicKey)),
		Digest: digest,
		Value:  base64.StdEncoding.EncodeToString(ed25519.Sign(priv, raw)),
	}, nil
}

// Verify checks that sig is a signature by pub over digest. The errors
// say which of key, digest or signature was wrong, and wrap
// ErrBadSignature.
func Verify(pub ed25519.PublicKey, digest string, sig *Signature) error {
	if sig == nil {
		return fmt.Errorf("%w: the manifest is not signed", ErrBadSignature)
	}
	if sig.Digest != digest {
		return fmt.Errorf("%w: signature covers manifest %s, but the manifest is %s (modified after signing)", ErrBadSignature, short(sig.Digest), short(digest))
	}
	if id := KeyID(pub); sig.KeyID != id {
		return fmt.Errorf("%w: signed by key %s, not by the given key %s", ErrBadSignature, sig.KeyID, id)
	}
	raw, err := hex.DecodeString(digest)
	if err != nil {
		return fmt.Errorf("%w: digest %q is not hex", ErrBadSignature, digest)
	}
	s, err := base64.StdEncoding.DecodeString(sig.Value)
	if err != nil || !ed25519.Verify(pub, raw, s) {
		return fmt.Errorf("%w: signature by key %s does not verify", ErrBadSignature, sig.KeyID)
	}
	return nil
}

func short(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

// Marshal encodes a signature as JSON.
func (s *Signature) Marshal() []byte {
	b, _ := json.Marshal(s) // plain strings cannot fail to encode
	return append(b, '\n')
}

// Unmarshal decodes a signature encoded by Marshal.
func Unmarshal(b []byte) (*Signature, error) {
	var s Signature
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode signature: %w", err)
	}
	if s.Digest == "" || s.Value == "" {
		return nil, errors.New("decode signature: missing digest or signature")
	}
	return &s, nil
}
