package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// Algorithm families. The family decides which kind of key may verify a token,
// which is what stops an attacker from choosing the algorithm (for example
// HS256 keyed with a public RSA key).
const (
	famNone = iota
	famHMAC
	famRSA
	famECDSA
	famEdDSA
)

// algFamily maps every accepted alg to its family; anything else, "none"
// included, is famNone and refused.
func algFamily(alg string) int {
	switch alg {
	case "HS256", "HS384", "HS512":
		return famHMAC
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return famRSA
	case "ES256", "ES384", "ES512":
		return famECDSA
	case "EdDSA":
		return famEdDSA
	}
	return famNone
}

// asymmetricAlgs are the algorithms that public keys can serve; key lookup
// tables are precomputed for each of them.
var asymmetricAlgs = [...]string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// publicKey is one verification key with the restrictions its source puts on
// it.
type publicKey struct {
	key crypto.PublicKey
	alg string // a JWK's "alg": when set, the only algorithm the key may serve
	kid string
}

// usableFor reports whether k may verify a token signed with alg. An ECDSA key
// serves only the alg of its own curve: ES384 over a P-256 key is a mismatch,
// not merely a bad signature.
func (k publicKey) usableFor(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return algFamily(alg) == famRSA
	case *ecdsa.PublicKey:
		return ecdsaAlg(key.Curve) == alg
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func ecdsaAlg(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// keyring is an immutable snapshot of the asymmetric keys. Verify loads it
// once per token, so a rotation never mixes old and new keys within one check.
// Candidate keys are precomputed per alg so that Verify does not allocate to
// build them.
type keyring struct {
	// pem maps an alg to the PEM keys that can serve it (a single key or a
	// jwt.VerificationKeySet); they carry no kid, so they are tried whatever
	// the token's kid says.
	pem map[string]any
	// noKID maps an alg to the keys for a token without kid: the PEM keys plus
	// the JWKS key when the set holds exactly one.
	noKID map[string]any
	// jwks is nil when no JWKS file is configured.
	jwks *jwkSet
}

// jwkSet is the lookup side of a JWKS document.
type jwkSet struct {
	byKID map[string]map[string]any // kid → alg → key(s)
	algs  map[string]bool           // algs that some key of the set can serve
	count int
}

// candidates returns what jwt's parser needs for a list of keys: nil for none,
// the key itself for one, a VerificationKeySet (tried in turn) for several.
func candidates(keys []publicKey, alg string) any {
	var set []jwt.VerificationKey
	for _, k := range keys {
		if k.usableFor(alg) {
			set = append(set, k.key)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	}
	return jwt.VerificationKeySet{Keys: set}
}

func byAlg(keys []publicKey) map[string]any {
	m := make(map[string]any)
	for _, alg := range asymmetricAlgs {
		if c := candidates(keys, alg); c != nil {
			m[alg] = c
		}
	}
	return m
}

func newJWKSet(keys []publicKey) *jwkSet {
	s := &jwkSet{
		byKID: make(map[string]map[string]any),
		algs:  make(map[string]bool),
		count: len(keys),
	}
	grouped := make(map[string][]publicKey)
	for _, k := range keys {
		if k.kid != "" {
			grouped[k.kid] = append(grouped[k.kid], k)
		}
	}
	for kid, ks := range grouped {
		s.byKID[kid] = byAlg(ks)
	}
	for alg := range byAlg(keys) {
		s.algs[alg] = true
	}
	return s
}

// loadKeyring reads the configured key files. An empty path means the source
// is not configured.
func loadKeyring(pemFile, jwksFile string) (*keyring, error) {
	var pemKeys, jwkKeys []publicKey
	if pemFile != "" {
		data, err := os.ReadFile(pemFile)
		if err != nil {
			return nil, fmt.Errorf("read public key file: %w", err)
		}
		if pemKeys, err = parsePEMKeys(data); err != nil {
			return nil, fmt.Errorf("public key file %s: %w", pemFile, err)
		}
	}
	ring := &keyring{pem: byAlg(pemKeys)}
	noKID := pemKeys
	if jwksFile != "" {
		data, err := os.ReadFile(jwksFile)
		if err != nil {
			return nil, fmt.Errorf("read JWKS file: %w", err)
		}
		if jwkKeys, err = parseJWKS(data); err != nil {
			return nil, fmt.Errorf("JWKS file %s: %w", jwksFile, err)
		}
		ring.jwks = newJWKSet(jwkKeys)
		if len(jwkKeys) == 1 {
			noKID = slices.Concat(pemKeys, jwkKeys)
		}
	}
	ring.noKID = byAlg(noKID)
	return ring, nil
}

// parsePEMKeys accepts the three encodings public keys are commonly
// distributed in. Any other block (a private key in particular) is an error
// rather than being skipped, because it almost always means the wrong file was
// configured.
func parsePEMKeys(data []byte) ([]publicKey, error) {
	var keys []publicKey
	rest := data
	for n := 1; ; n++ {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		var (
			key crypto.PublicKey
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d: unsupported type %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", n, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		if err := checkPublicKey(key); err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		keys = append(keys, publicKey{key: key})
	}
	// pem.Decode gives up silently on a damaged block; without this check
	// every key after it would be dropped without notice.
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("PEM block %d is malformed", len(keys)+1)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

func keyKind(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", key)
}

func checkPublicKey(key crypto.PublicKey) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		// crypto/rsa refuses to verify with smaller moduli, so such a key
		// would silently reject every token; say so at load time instead.
		if k.N == nil || k.N.BitLen() < 1024 || k.E < 3 {
			return errors.New("RSA key is invalid or smaller than 1024 bits")
		}
		return nil
	case ed25519.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if ecdsaAlg(k.Curve) == "" {
			return fmt.Errorf("unsupported ECDSA curve %s (want P-256, P-384 or P-521)", k.Curve.Params().Name)
		}
		return nil
	}
	return fmt.Errorf("unsupported public key type %T (want RSA, ECDSA or Ed25519)", key)
}

// parseJWKS turns a JWKS document into signature keys. Following RFC 7517
// §5, keys of a type this package does not understand and keys meant for
// encryption are skipped, so a provider's set that also publishes such keys
// still loads. Secret material (symmetric or private keys) is an error: it
// does not belong in a public key set and must not be trusted from one.
func parseJWKS(data []byte) ([]publicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JWKS document: no "keys" array`)
	}
	var keys []publicKey
	for i, raw := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			if errors.Is(err, jose.ErrUnsupportedKeyType) {
				continue
			}
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		if jwk.Algorithm != "" && algFamily(jwk.Algorithm) == famNone {
			continue
		}
		switch k := jwk.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			if err := checkPublicKey(k); err != nil {
				return nil, fmt.Errorf("key %d (kid %q): %w", i, jwk.KeyID, err)
			}
			if jwk.Algorithm != "" && !(publicKey{key: k}).usableFor(jwk.Algorithm) {
				return nil, fmt.Errorf("key %d (kid %q): alg %s does not fit a %s key", i, jwk.KeyID, jwk.Algorithm, keyKind(k))
			}
		case []byte:
			return nil, fmt.Errorf("key %d (kid %q): symmetric keys are not accepted from a JWKS; configure a shared secret instead", i, jwk.KeyID)
		default:
			if !jwk.IsPublic() {
				return nil, fmt.Errorf("key %d (kid %q): holds private key material", i, jwk.KeyID)
			}
			continue
		}
		keys = append(keys, publicKey{key: jwk.Key, alg: jwk.Algorithm, kid: jwk.KeyID})
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable signature key")
	}
	return keys, nil
}
