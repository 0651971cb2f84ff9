package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	"regie/storage"
)

// keyRing keeps the OP's signing keys in Records. Time is cut into periods
// of cfg.KeyRotation; period n is signed by key "k<n>", which is created by
// whichever instance first needs it (a create-only put, so instances agree).
// The next period's key is published in advance, and a key stays published
// until every token it signed has expired.
type keyRing struct {
	recs     storage.Records
	encKey   []byte
	rotation time.Duration
	keep     time.Duration // longest lifetime of a signed token
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]*rsa.PrivateKey
	// published is the last key set, valid until publishedUntil (at most a
	// minute, and never past the end of the period it was built in, so a
	// key created by another instance is seen before it signs).
	published      []op.Key
	publishedUntil time.Time
}

type storedKey struct {
	Kid     string    `json:"kid"`
	Alg     string    `json:"alg"`
	Private []byte    `json:"priv"` // PKCS#8, sealed
	From    time.Time `json:"from"`
	Until   time.Time `json:"until"`
}

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.kid }

type publicKey struct {
	kid string
	key *rsa.PublicKey
}

func (k publicKey) ID() string                         { return k.kid }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key }

var (
	_ op.SigningKey = signingKey{}
	_ op.Key        = publicKey{}
)

func (kr *keyRing) period(t time.Time) int64 { return t.UnixNano() / int64(kr.rotation) }

// ensure returns the key of period n, creating it if needed.
func (kr *keyRing) ensure(ctx context.Context, n int64) (*rsa.PrivateKey, string, error) {
	kid := "k" + strconv.FormatInt(n, 10)
	kr.mu.Lock()
	k, ok := kr.cache[kid]
	kr.mu.Unlock()
	if ok {
		return k, kid, nil
	}
	for range 3 {
		var sk storedKey
		_, err := getJSON(ctx, kr.recs, kindSigningKey, kid, &sk)
		if err == nil {
			der, err := open(kr.encKey, sk.Private, "signkey/"+kid)
			if err != nil {
				return nil, "", fmt.Errorf("auth: signing key %s: %w", kid, err)
			}
			pk, err := x509.ParsePKCS8PrivateKey(der)
			if err != nil {
				return nil, "", fmt.Errorf("auth: signing key %s: %w", kid, err)
			}
			rk, ok := pk.(*rsa.PrivateKey)
			if !ok {
				return nil, "", fmt.Errorf("auth: signing key %s is not RSA", kid)
			}
			kr.mu.Lock()
			kr.cache[kid] = rk
			kr.mu.Unlock()
			return rk, kid, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, "", fmt.Errorf("auth: load signing key: %w", err)
		}
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, "", fmt.Errorf("auth: generate signing key: %w", err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(rk)
		from := time.Unix(0, n*int64(kr.rotation)).UTC()
		until := from.Add(kr.rotation)
		sk = storedKey{Kid: kid, Alg: "RS256", Private: seal(kr.encKey, der, "signkey/"+kid), From: from, Until: until}
		_, err = putJSON(ctx, kr.recs, kindSigningKey, kid, sk, until.Add(kr.keep+time.Minute), 0)
		if err != nil && !errors.Is(err, storage.ErrExists) {
			return nil, "", fmt.Errorf("auth: store signing key: %w", err)
		}
		// on ErrExists another instance won; loop and load its key
	}
	return nil, "", errors.New("auth: signing key: creation raced repeatedly")
}

// SigningKey returns the key of the current period.
func (kr *keyRing) SigningKey(ctx context.Context) (op.SigningKey, error) {
	k, kid, err := kr.ensure(ctx, kr.period(kr.now()))
	if err != nil {
		return nil, err
	}
	return signingKey{kid: kid, key: k}, nil
}

// KeySet returns every published key: the current one, the next one, and
// earlier ones whose tokens may still be valid.
func (kr *keyRing) KeySet(ctx context.Context) ([]op.Key, error) {
	now := kr.now()
	kr.mu.Lock()
	if now.Before(kr.publishedUntil) {
		ks := kr.published
		kr.mu.Unlock()
		return ks, nil
	}
	kr.mu.Unlock()
	n := kr.period(now)
	if _, _, err := kr.ensure(ctx, n); err != nil {
		return nil, err
	}
	if _, _, err := kr.ensure(ctx, n+1); err != nil {
		return nil, err
	}
	var out []op.Key
	err := kr.recs.ListRecords(ctx, kindSigningKey, "", func(r *storage.Record) error {
		k, kid, err := kr.ensure(ctx, mustPeriod(r.Key))
		if err != nil {
			return err
		}
		out = append(out, publicKey{kid: kid, key: &k.PublicKey})
		return nil
	})
	if err != nil {
		return nil, err
	}
	// drop cached keys that are no longer published
	kr.mu.Lock()
	live := map[string]bool{}
	for _, k := range out {
		live[k.ID()] = true
	}
	for kid := range kr.cache {
		if !live[kid] {
			delete(kr.cache, kid)
		}
	}
	kr.published = out
	kr.publishedUntil = now.Add(time.Minute)
	if end := time.Unix(0, (n+1)*int64(kr.rotation)); end.Before(kr.publishedUntil) {
		kr.publishedUntil = end
	}
	kr.mu.Unlock()
	return out, nil
}

func mustPeriod(kid string) int64 {
	n, _ := strconv.ParseInt(kid[1:], 10, 64)
	return n
}
