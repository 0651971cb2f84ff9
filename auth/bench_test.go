package auth

import (
	"context"
	"net/http"
	"net/url"
	"testing"
)

// BenchmarkAuthenticateBearer measures what the bearer authenticator adds
// to every FHIR request: JWT signature and claim checks plus one Records
// read (the revocation check) on the embedded store.
func BenchmarkAuthenticateBearer(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.Dev = true })
	_, m := f.postForm(http.DefaultClient, f.base+"/dev/token", url.Values{"subject": {"Patient/p1"}}, "", "")
	h := "Bearer " + m["access_token"].(string)
	ctx := context.Background()
	if _, err := f.b.AuthenticateBearer(ctx, h, RequestMeta{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.b.AuthenticateBearer(ctx, h, RequestMeta{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCheckScope measures the scope check the engine runs per interaction.
func BenchmarkCheckScope(b *testing.B) {
	p := &Principal{Kind: KindClient, Scopes: []string{"openid", "fhirUser", "launch/patient", "patient/Observation.rs?category=laboratory", "patient/*.rs"}}
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckScope(p, "Observation", InteractionSearch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateBearerFirstUse measures a token's first use: the
// RSA signature and claim checks plus the record read.
func BenchmarkAuthenticateBearerFirstUse(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.Dev = true })
	_, m := f.postForm(http.DefaultClient, f.base+"/dev/token", url.Values{"subject": {"Patient/p1"}}, "", "")
	h := "Bearer " + m["access_token"].(string)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.b.verified.mu.Lock()
		f.b.verified.m = nil
		f.b.verified.mu.Unlock()
		if _, err := f.b.AuthenticateBearer(ctx, h, RequestMeta{}); err != nil {
			b.Fatal(err)
		}
	}
}
