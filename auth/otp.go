package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"regie/storage"
)

// totpOpts: RFC 6238 as Google Authenticator does it (SHA-1, 6 digits, 30 s).
var totpOpts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

func newTOTPKey(issuer, account string) (*otp.Key, error) {
	return totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: 30, SecretSize: 20,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}

func (b *Broker) issuerLabel() string {
	h := strings.TrimPrefix(strings.TrimPrefix(b.issuer, "https://"), "http://")
	return "Regie (" + h + ")"
}

// checkTOTP accepts a code of the current step or one step either side,
// each step at most once per account.
func (b *Broker) checkTOTP(ctx context.Context, a *account, sealed []byte, code string) bool {
	if len(code) != 6 {
		return false
	}
	seed, err := open(b.secrets.enc, sealed, "totp/"+a.ID)
	if err != nil {
		return false
	}
	now := b.now()
	for _, off := range []int64{0, -1, 1} {
		t := now.Add(time.Duration(off*30) * time.Second)
		want, err := totp.GenerateCodeCustom(string(seed), t, totpOpts)
		if err != nil || !constantEqual(want, code) {
			continue
		}
		step := t.Unix() / 30
		// a code is accepted once: the step is remembered until it can no
		// longer validate
		_, err = b.recs.PutRecord(ctx, &storage.Record{Kind: kindTOTPUsed, Key: a.ID + "." + strconv.FormatInt(step, 10),
			Value: []byte("1"), Expires: now.Add(3 * time.Minute)}, 0)
		return err == nil
	}
	return false
}

// randDigits returns n decimal digits from the CSPRNG.
func randDigits(n int) string {
	var sb strings.Builder
	for range n {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		sb.WriteByte(byte('0' + d.Int64()))
	}
	return sb.String()
}

// prefixAlphabet avoids characters that are easily confused.
const prefixAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func randFrom(alphabet string, n int) string {
	var sb strings.Builder
	for range n {
		i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		sb.WriteByte(alphabet[i.Int64()])
	}
	return sb.String()
}

// randPrefix is the 4-character prefix shown on screen and in the SMS.
func randPrefix() string { return randFrom(prefixAlphabet, 4) }

// randRecoveryCode is "XXXXX-XXXXX" (50 bits).
func randRecoveryCode() string {
	return randFrom(prefixAlphabet, 5) + "-" + randFrom(prefixAlphabet, 5)
}

func normaliseRecovery(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(s)))
}

// useRecoveryCode spends a recovery code.
func (b *Broker) useRecoveryCode(ctx context.Context, accountID, code string) bool {
	h := mac(b.secrets.ident, "recovery", normaliseRecovery(code))
	used := false
	_, err := b.updateAccount(ctx, accountID, func(a *account) error {
		used = false
		for i, x := range a.Local.Recovery {
			if constantEqual(x, h) {
				a.Local.Recovery = append(a.Local.Recovery[:i:i], a.Local.Recovery[i+1:]...)
				used = true
				return nil
			}
		}
		return errNoRecovery
	})
	return err == nil && used
}

var errNoRecovery = errors.New("auth: no such recovery code")
