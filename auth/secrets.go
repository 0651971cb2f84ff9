package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"regie/storage"
)

// Record kinds used by the broker in storage.Records.
const (
	kindSecret     = "auth.secret"     // dev-mode master secret
	kindSigningKey = "auth.signkey"    // signing keys, encrypted
	kindAuthReq    = "auth.authreq"    // pending authorization requests
	kindCode       = "auth.code"       // authorization code -> auth request
	kindCodeUsed   = "auth.codeused"   // redeemed code -> grant family
	kindAccess     = "auth.at"         // access tokens: family/id -> grant
	kindRefresh    = "auth.rt"         // refresh tokens: hash -> family
	kindFamily     = "auth.family"     // grant families
	kindJTI        = "auth.jti"        // client assertion jti replay cache
	kindSession    = "auth.session"    // browser sessions
	kindSessIndex  = "auth.sessidx"    // account -> sessions
	kindAccount    = "auth.account"    // accounts
	kindIdentity   = "auth.identity"   // (provider, subject) -> account
	kindLogin      = "auth.login"      // upstream login state
	kindOTP        = "auth.otp"        // one-time codes in flight
	kindRate       = "auth.rate"       // rate-limit counters
	kindInvite     = "auth.invite"     // invitations and activation links
	kindReset      = "auth.reset"      // password reset links
	kindTOTPUsed   = "auth.totpused"   // accepted TOTP steps
	kindLock       = "auth.lock"       // lock-outs
	kindEmailIndex = "auth.emailidx"   // e-mail hash -> account
	kindStepUp     = "auth.stepup"     // step-up flows in flight
	kindDevOutbox  = "auth.dev.outbox" // dev outbox messages
	kindSessFamily = "auth.sessfam"    // account.session.family: grants of a session
)

// keys holds the subkeys derived from the master secret.
type keys struct {
	enc      []byte // AES-256-GCM at rest
	pairwise []byte // HMAC for pairwise subjects
	ident    []byte // HMAC for identity keys and hashes of personal data
	csrf     []byte // HMAC for CSRF tokens
}

func deriveKeys(master []byte) keys {
	d := func(label string) []byte {
		m := hmac.New(sha256.New, master)
		m.Write([]byte("regie-auth/" + label))
		return m.Sum(nil)
	}
	return keys{enc: d("enc"), pairwise: d("pairwise"), ident: d("ident"), csrf: d("csrf")}
}

// devSecret returns the dev-mode master secret, generating it once.
func devSecret(ctx context.Context, recs storage.Records) ([]byte, error) {
	for range 3 {
		r, err := recs.GetRecord(ctx, kindSecret, "master")
		if err == nil {
			return r.Value, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("auth: load dev secret: %w", err)
		}
		s := randBytes(32)
		if _, err := recs.PutRecord(ctx, &storage.Record{Kind: kindSecret, Key: "master", Value: s}, 0); err != nil && !errors.Is(err, storage.ErrExists) {
			return nil, fmt.Errorf("auth: store dev secret: %w", err)
		}
	}
	return nil, errors.New("auth: dev secret: no stable value")
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("auth: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return b
}

// randToken returns an unguessable URL-safe token of n random bytes.
func randToken(n int) string { return base64.RawURLEncoding.EncodeToString(randBytes(n)) }

// hashToken returns the hex SHA-256 of a high-entropy token; it is the
// record key under which the token is stored, so that a leaked database does
// not leak live tokens.
func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// mac returns the hex HMAC-SHA-256 of parts under key.
func mac(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

func constantEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// seal encrypts plaintext with AES-256-GCM; aad binds it to its use.
func seal(key []byte, plaintext []byte, aad string) []byte {
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	nonce := randBytes(gcm.NonceSize())
	return gcm.Seal(nonce, nonce, plaintext, []byte(aad))
}

func open(key []byte, ciphertext []byte, aad string) ([]byte, error) {
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	if len(ciphertext) < gcm.NonceSize() {
		return nil, errors.New("auth: ciphertext too short")
	}
	pt, err := gcm.Open(nil, ciphertext[:gcm.NonceSize()], ciphertext[gcm.NonceSize():], []byte(aad))
	if err != nil {
		return nil, errors.New("auth: cannot decrypt")
	}
	return pt, nil
}

// getJSON loads kind/key into v and returns the record version.
func getJSON(ctx context.Context, recs storage.Records, kind, key string, v any) (int64, error) {
	r, err := recs.GetRecord(ctx, kind, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(r.Value, v); err != nil {
		return 0, fmt.Errorf("auth: decode %s: %w", kind, err)
	}
	return r.Version, nil
}

// putJSON stores v under kind/key with the precondition ifVersion.
func putJSON(ctx context.Context, recs storage.Records, kind, key string, v any, expires time.Time, ifVersion int64) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("auth: encode %s: %w", kind, err)
	}
	r, err := recs.PutRecord(ctx, &storage.Record{Kind: kind, Key: key, Value: b, Expires: expires}, ifVersion)
	if err != nil {
		return 0, err
	}
	return r.Version, nil
}
