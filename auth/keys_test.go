package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// t0 is the fixed "now" of the tests; Config.Now returns it.
var t0 = time.Unix(1_700_000_000, 0)

func fixedNow() time.Time { return t0 }

// testKeys are generated once per test binary: RSA generation is slow,
// especially under the race detector.
type testKeys struct {
	rsa, rsa2     *rsa.PrivateKey
	p256, p256b   *ecdsa.PrivateKey
	p384          *ecdsa.PrivateKey
	p521          *ecdsa.PrivateKey
	ed, ed2       ed25519.PrivateKey
	secret, other []byte
}

var generateKeys = sync.OnceValues(func() (*testKeys, error) {
	k := &testKeys{secret: []byte("0123456789abcdef0123456789abcdef"), other: []byte("fedcba9876543210fedcba9876543210")}
	var err error
	gen := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	gen(func() (e error) { k.rsa, e = rsa.GenerateKey(rand.Reader, 2048); return })
	gen(func() (e error) { k.rsa2, e = rsa.GenerateKey(rand.Reader, 2048); return })
	gen(func() (e error) { k.p256, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return })
	gen(func() (e error) { k.p256b, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return })
	gen(func() (e error) { k.p384, e = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); return })
	gen(func() (e error) { k.p521, e = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); return })
	gen(func() (e error) { _, k.ed, e = ed25519.GenerateKey(rand.Reader); return })
	gen(func() (e error) { _, k.ed2, e = ed25519.GenerateKey(rand.Reader); return })
	return k, err
})

func fixtures(t testing.TB) *testKeys {
	t.Helper()
	k, err := generateKeys()
	if err != nil {
		t.Fatalf("generate keys: %v", err)
	}
	return k
}

// pemBlock encodes a public key the way each supported PEM form does.
func pemBlock(t testing.TB, typ string, pub crypto.PublicKey, signer crypto.Signer) []byte {
	t.Helper()
	var der []byte
	var err error
	switch typ {
	case "PUBLIC KEY":
		der, err = x509.MarshalPKIXPublicKey(pub)
	case "RSA PUBLIC KEY":
		der = x509.MarshalPKCS1PublicKey(pub.(*rsa.PublicKey))
	case "CERTIFICATE":
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "relay test"},
			NotBefore:    t0.Add(-time.Hour),
			NotAfter:     t0.Add(time.Hour),
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	default:
		t.Fatalf("unknown PEM type %s", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rewrite replaces a file's content through a rename, the way rotation
// tooling does, so a reader never sees a partial file.
func rewrite(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func pemFile(t testing.TB, pubs ...crypto.PublicKey) string {
	t.Helper()
	var data []byte
	for _, p := range pubs {
		data = append(data, pemBlock(t, "PUBLIC KEY", p, nil)...)
	}
	return writeFile(t, "keys.pem", data)
}

type jwk struct {
	kid string
	alg string
	use string
	key any
}

func jwksDoc(t testing.TB, keys ...jwk) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key, KeyID: k.kid, Algorithm: k.alg, Use: k.use})
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func jwksFile(t testing.TB, keys ...jwk) string {
	t.Helper()
	return writeFile(t, "keys.jwks", jwksDoc(t, keys...))
}

// claims returns a valid claim set at t0; overrides replace or, with a nil
// value, delete entries.
func claims(overrides map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "alice",
		"iat": t0.Unix(),
		"exp": t0.Add(time.Hour).Unix(),
	}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// rawToken assembles a token from literal parts, for headers the jwt package
// would not produce.
func rawToken(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}
