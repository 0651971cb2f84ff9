package auth

import (
	_ "embed"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
)

//go:embed data/common-passwords.txt
var commonPasswordsText string

// passwordPolicy checks new passwords: at least 12 characters, not based on
// a common or breached password, not the e-mail address, not one repeated
// character or a keyboard or digit run.
type passwordPolicy struct{ common map[string]bool }

func newPasswordPolicy() *passwordPolicy {
	p := &passwordPolicy{common: map[string]bool{}}
	for _, line := range strings.Split(commonPasswordsText, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			p.common[line] = true
		}
	}
	return p
}

var (
	errPasswordShort  = errors.New("auth: password shorter than 12 characters")
	errPasswordCommon = errors.New("auth: password is common or guessable")
)

// normalise lower-cases, undoes common leetspeak and strips digits and
// symbols from both ends.
func normalise(s string) string {
	s = strings.ToLower(s)
	s = strings.NewReplacer("@", "a", "0", "o", "1", "i", "3", "e", "4", "a", "5", "s", "$", "s", "7", "t", "!", "i").Replace(s)
	return strings.TrimFunc(s, func(r rune) bool { return !unicode.IsLetter(r) })
}

func (p *passwordPolicy) check(pw, email string) error {
	if utf8.RuneCountInString(pw) < 12 {
		return errPasswordShort
	}
	lower := strings.ToLower(pw)
	if p.common[lower] || p.common[normalise(pw)] || p.common[strings.TrimFunc(lower, func(r rune) bool { return !unicode.IsLetter(r) })] {
		return errPasswordCommon
	}
	n := normalise(pw)
	for w := range p.common {
		if len(w) >= 8 && strings.Contains(n, w) {
			return errPasswordCommon
		}
	}
	email = strings.ToLower(strings.TrimSpace(email))
	if email != "" && strings.Contains(lower, email) {
		return errPasswordCommon
	}
	if local, _, ok := strings.Cut(email, "@"); ok && len(local) >= 4 && strings.Contains(lower, local) {
		return errPasswordCommon
	}
	distinct := map[rune]bool{}
	for _, r := range lower {
		distinct[r] = true
	}
	if len(distinct) < 5 {
		return errPasswordCommon
	}
	return nil
}

// Argon2id parameters: the OWASP minimum (19 MiB, 2 passes, 1 lane).
var argonParams = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func hashPassword(pw string) (string, error) { return argon2id.CreateHash(pw, argonParams) }

// checkPassword compares pw with hash; for unknown accounts (hash "") it
// compares with dummy, so that a wrong e-mail address costs as much time as
// a wrong password.
func checkPassword(pw, hash, dummy string) bool {
	if hash == "" {
		_, _ = argon2id.ComparePasswordAndHash(pw, dummy)
		return false
	}
	ok, err := argon2id.ComparePasswordAndHash(pw, hash)
	return err == nil && ok
}
