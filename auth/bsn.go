package auth

// ValidBSN reports whether s is a citizen service number: nine digits
// passing the 11-proef (9·d1 + 8·d2 + … + 2·d8 − d9 ≡ 0 mod 11), not all
// zeros. Eight-digit numbers are accepted with a leading zero.
func ValidBSN(s string) bool {
	if len(s) == 8 {
		s = "0" + s
	}
	if len(s) != 9 || s == "000000000" {
		return false
	}
	sum := 0
	for i := 0; i < 9; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if i < 8 {
			sum += d * (9 - i)
		} else {
			sum -= d
		}
	}
	return sum%11 == 0
}
