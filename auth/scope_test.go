package auth

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in   string
		want Scope
		err  bool
	}{
		{in: "patient/*.rs", want: Scope{Context: "patient", ResourceType: "*", Perms: "rs"}},
		{in: "user/Observation.cruds", want: Scope{Context: "user", ResourceType: "Observation", Perms: "cruds"}},
		{in: "system/*.cruds", want: Scope{Context: "system", ResourceType: "*", Perms: "cruds"}},
		{in: "patient/Observation.read", want: Scope{Context: "patient", ResourceType: "Observation", Perms: "rs"}},
		{in: "user/*.write", want: Scope{Context: "user", ResourceType: "*", Perms: "cud"}},
		{in: "user/*.*", want: Scope{Context: "user", ResourceType: "*", Perms: "cruds"}},
		{in: "patient/Observation.rs?category=laboratory", want: Scope{Context: "patient", ResourceType: "Observation", Perms: "rs",
			Filter: []Constraint{{"Observation", "category", "laboratory"}}}},
		{in: "patient/Observation.rs?status=final&category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs", want: Scope{Context: "patient", ResourceType: "Observation", Perms: "rs",
			Filter: []Constraint{{"Observation", "category", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}, {"Observation", "status", "final"}}}},
		{in: "patient/*.sr", err: true},
		{in: "patient/*.rr", err: true},
		{in: "patient/*.x", err: true},
		{in: "patient/*.", err: true},
		{in: "patient/.rs", err: true},
		{in: "patient/observation.rs", err: true},
		{in: "patient/*.rs?category=x", err: true},
		{in: "patient/Observation.rs?category=", err: true},
	}
	for _, tt := range tests {
		got, err := ParseScope(tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("ParseScope(%q) = %+v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseScope(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, s := range []string{"openid", "fhirUser", "launch/patient", "offline_access", "other/x.rs"} {
		if _, err := ParseScope(s); !errors.Is(err, ErrNotSMARTScope) {
			t.Errorf("ParseScope(%q) err = %v, want ErrNotSMARTScope", s, err)
		}
	}
}

func TestCheckScope(t *testing.T) {
	all := []Interaction{InteractionRead, InteractionVRead, InteractionSearch, InteractionCreate, InteractionUpdate,
		InteractionPatch, InteractionDelete, InteractionHistory, InteractionOperation}
	tests := []struct {
		kind   Kind
		scopes []string
		typ    string
		allow  []Interaction
	}{
		{KindClient, []string{"patient/*.rs"}, "Observation", []Interaction{"read", "vread", "search", "history", "operation"}},
		{KindClient, []string{"patient/Observation.cruds"}, "Observation", all},
		{KindClient, []string{"patient/Observation.cruds"}, "Condition", nil},
		{KindProfessional, []string{"user/Observation.cu"}, "Observation", []Interaction{"create", "update", "patch"}},
		{KindProfessional, []string{"user/*.read"}, "Patient", []Interaction{"read", "vread", "search", "history", "operation"}},
		{KindProfessional, []string{"user/*.write"}, "Patient", []Interaction{"create", "update", "patch", "delete"}},
		{KindSystem, []string{"system/*.cruds"}, "Patient", all},
		{KindSystem, []string{"user/*.cruds"}, "Patient", nil},         // a system principal needs system scopes
		{KindProfessional, []string{"system/*.cruds"}, "Patient", nil}, // and only it may use them
		{KindClient, []string{"openid", "fhirUser"}, "Patient", nil},
		{KindClient, nil, "Patient", nil},
	}
	for _, tt := range tests {
		p := &Principal{Kind: tt.kind, Scopes: tt.scopes}
		for _, i := range all {
			err := CheckScope(p, tt.typ, i)
			want := false
			for _, a := range tt.allow {
				if a == i {
					want = true
				}
			}
			if (err == nil) != want {
				t.Errorf("%s %v %s %s: err = %v, want allowed=%v", tt.kind, tt.scopes, tt.typ, i, err, want)
			}
			if err != nil && !errors.Is(err, ErrForbidden) {
				t.Errorf("error %v does not wrap ErrForbidden", err)
			}
		}
	}
	if err := CheckScope(nil, "Patient", InteractionRead); !errors.Is(err, ErrForbidden) {
		t.Errorf("nil principal: %v", err)
	}
	if err := CheckScope(&Principal{Kind: KindSystem, Scopes: []string{"system/*.cruds"}}, "Patient", "explode"); !errors.Is(err, ErrForbidden) {
		t.Errorf("unknown interaction: %v", err)
	}
}

func TestScopeGrants(t *testing.T) {
	p := &Principal{Kind: KindClient, Scopes: []string{
		"patient/Observation.rs?category=laboratory",
		"patient/Observation.rs?category=vital-signs",
		"patient/Condition.rs",
		"patient/Condition.rs?clinical-status=active",
	}}
	g, err := ScopeGrants(p, "Observation", InteractionSearch)
	if err != nil {
		t.Fatal(err)
	}
	want := []ScopeGrant{
		{Context: "patient", Constraints: []Constraint{{"Observation", "category", "laboratory"}}},
		{Context: "patient", Constraints: []Constraint{{"Observation", "category", "vital-signs"}}},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("grants = %+v, want %+v", g, want)
	}
	g, _ = ScopeGrants(p, "Condition", InteractionRead)
	if len(g) != 1 || len(g[0].Constraints) != 0 {
		t.Errorf("an unconstrained grant must subsume constrained ones: %+v", g)
	}
	if _, err := ScopeGrants(p, "Observation", InteractionCreate); !errors.Is(err, ErrForbidden) {
		t.Errorf("create: %v", err)
	}
}

func TestScopeCovers(t *testing.T) {
	c := &client{cfg: ClientConfig{Scopes: []string{"user/*.cruds", "patient/Observation.rs?category=laboratory", "openid"}}}
	for s, want := range map[string]bool{
		"user/Observation.rs": true, "user/*.read": true, "user/*.cruds": true, "patient/*.rs": false,
		"patient/Observation.rs?category=laboratory": true, "patient/Observation.rs": false,
		"patient/Observation.rs?category=laboratory&status=final": true, "system/*.rs": false, "openid": true, "fhirUser": false,
	} {
		if got := c.IsScopeAllowed(s); got != want {
			t.Errorf("IsScopeAllowed(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestLevels(t *testing.T) {
	for in, want := range map[string]Level{
		"basis": LevelBasis, "Midden": LevelMidden, "25": LevelSubstantieel, "hoog": LevelHoog,
		ACRBasis: LevelBasis, ACRMidden: LevelMidden, ACRSubstantieel: LevelSubstantieel, ACRHoog: LevelHoog,
		"urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract": LevelMidden,
	} {
		if got, ok := ParseLevel(in); !ok || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v", in, got, ok)
		}
		if l, _ := ParseLevel(want.ACR()); l != want {
			t.Errorf("ACR round trip of %v: %v", want, l)
		}
	}
	if _, ok := ParseLevel("super"); ok {
		t.Error("ParseLevel accepted nonsense")
	}
}

func TestStepUp(t *testing.T) {
	f := newFixture(t, nil)
	now := f.clock.Now()
	portal := &Principal{Kind: KindClient, ClientID: "portal", SessionID: "s1", Level: LevelMidden}
	if err := f.b.StepUp(portal, Requirement{Level: LevelMidden}, "/dossier"); err != nil {
		t.Errorf("midden satisfies midden: %v", err)
	}
	err := f.b.StepUp(portal, Requirement{Level: LevelSubstantieel}, "/dossier")
	var se *StepUpError
	if !errors.As(err, &se) || !errors.Is(err, ErrStepUpRequired) || !errors.Is(err, ErrForbidden) || se.RedirectURL == "" || se.ACR != ACRSubstantieel {
		t.Errorf("step-up error %v %+v", err, se)
	}
	fresh := Requirement{Level: LevelMidden, SecondFactorWithin: 5 * time.Minute}
	if err := f.b.StepUp(portal, fresh, "/x"); err == nil {
		t.Error("no second factor satisfied a fresh-second-factor requirement")
	}
	portal.SecondFactorTime = now.Add(-4 * time.Minute)
	if err := f.b.StepUp(portal, fresh, "/x"); err != nil {
		t.Errorf("second factor 4 minutes ago: %v", err)
	}
	portal.SecondFactorTime = now.Add(-6 * time.Minute)
	if err := f.b.StepUp(portal, fresh, "//evil.example/"); !errors.As(err, &se) || contains(se.RedirectURL, "evil") {
		t.Errorf("stale second factor or open redirect: %v", err)
	}
	api := &Principal{Kind: KindProfessional, ClientID: "app", Level: LevelMidden}
	if err := f.b.StepUp(api, Requirement{Level: LevelHoog}, "/x"); !errors.As(err, &se) || se.RedirectURL != "" || se.ACR != ACRHoog {
		t.Errorf("bearer step-up: %v", err)
	}
}

func TestMessagesComplete(t *testing.T) {
	for k := range messagesNL {
		if messagesEN[k] == "" {
			t.Errorf("no English text for %q", k)
		}
	}
	for k := range messagesEN {
		if messagesNL[k] == "" {
			t.Errorf("no Dutch text for %q", k)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	recs := newRecords(t, time.Now)
	secret := []byte("0123456789abcdef0123456789abcdef")
	ok := func() Config {
		return Config{BaseURL: "https://regie.example.nl", Secret: secret, Records: recs, Mailer: &outbox{recs: recs, now: time.Now}, SMS: &outbox{recs: recs, now: time.Now}}
	}
	tests := map[string]func(*Config){
		"no records":            func(c *Config) { c.Records = nil },
		"http outside loopback": func(c *Config) { c.BaseURL = "http://regie.example.nl" },
		"relative base":         func(c *Config) { c.BaseURL = "/regie" },
		"short secret":          func(c *Config) { c.Secret = []byte("short") },
		"duplicate client": func(c *Config) {
			c.Clients = []ClientConfig{{ID: "a", AuthMethod: "none"}, {ID: "a", AuthMethod: "none"}}
		},
		"pkjwt without keys": func(c *Config) { c.Clients = []ClientConfig{{ID: "a", AuthMethod: "private_key_jwt"}} },
		"short client secret": func(c *Config) {
			c.Clients = []ClientConfig{{ID: "a", AuthMethod: "client_secret_basic", Secret: "x"}}
		},
		"unknown auth method": func(c *Config) { c.Clients = []ClientConfig{{ID: "a", AuthMethod: "tls_client_auth"}} },
		"bad scope": func(c *Config) {
			c.Clients = []ClientConfig{{ID: "a", AuthMethod: "none", Scopes: []string{"patient/*.xyz"}}}
		},
		"bad provider kind": func(c *Config) {
			c.Providers = []ProviderConfig{{ID: "p", Kind: "google", Issuer: "https://idp.example"}}
		},
		"http provider": func(c *Config) {
			c.Providers = []ProviderConfig{{ID: "p", Kind: "digid", Issuer: "http://idp.example"}}
		},
		"no mailer": func(c *Config) { c.Mailer = nil },
	}
	if _, err := New(context.Background(), ok()); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, mutate := range tests {
		c := ok()
		mutate(&c)
		if _, err := New(context.Background(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
