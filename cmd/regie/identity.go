package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"regie/auth"
	"regie/auth/notify"
)

// identityFile is the identity configuration `regie serve` reads from
// --identity-config: OAuth clients, upstream providers and the e-mail and
// SMS adapters. Secrets may be given as "env:NAME" to read them from the
// environment instead of the file.
type identityFile struct {
	Clients   []auth.ClientConfig   `json:"clients"`
	Providers []auth.ProviderConfig `json:"providers"`
	SMTP      *struct {
		Host, Username, Password, From string
		Port                           int
		ImplicitTLS                    bool `json:"implicitTLS"`
	} `json:"smtp"`
	SMS *struct {
		// Provider is "messagebird" or "webhook".
		Provider              string
		AccessKey, Originator string
		URL, BearerToken      string
	} `json:"sms"`
}

// secretValue resolves "env:NAME" to the environment variable NAME.
func secretValue(s string) (string, error) {
	if name, ok := strings.CutPrefix(s, "env:"); ok {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty", name)
		}
		return v, nil
	}
	return s, nil
}

// loadIdentity reads the identity configuration into cfg.
func loadIdentity(path string, cfg *auth.Config) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--identity-config: %w", err)
	}
	var f identityFile
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("--identity-config %s: %w", path, err)
	}
	for i := range f.Clients {
		if f.Clients[i].Secret, err = secretValue(f.Clients[i].Secret); err != nil {
			return fmt.Errorf("client %s: %w", f.Clients[i].ID, err)
		}
	}
	for i := range f.Providers {
		if f.Providers[i].ClientSecret, err = secretValue(f.Providers[i].ClientSecret); err != nil {
			return fmt.Errorf("provider %s: %w", f.Providers[i].ID, err)
		}
	}
	cfg.Clients = append(cfg.Clients, f.Clients...)
	cfg.Providers = append(cfg.Providers, f.Providers...)
	if s := f.SMTP; s != nil {
		pw, err := secretValue(s.Password)
		if err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
		m, err := notify.NewSMTP(notify.SMTPConfig{Host: s.Host, Port: s.Port, Username: s.Username, Password: pw, From: s.From, ImplicitTLS: s.ImplicitTLS})
		if err != nil {
			return err
		}
		cfg.Mailer = m
	}
	if s := f.SMS; s != nil {
		switch s.Provider {
		case "messagebird":
			key, err := secretValue(s.AccessKey)
			if err != nil {
				return fmt.Errorf("sms: %w", err)
			}
			sms, err := notify.NewMessageBird(notify.MessageBirdConfig{AccessKey: key, Originator: s.Originator})
			if err != nil {
				return err
			}
			cfg.SMS = sms
		case "webhook":
			tok, err := secretValue(s.BearerToken)
			if err != nil && s.BearerToken != "" {
				return fmt.Errorf("sms: %w", err)
			}
			sms, err := notify.NewWebhook(notify.WebhookConfig{URL: s.URL, BearerToken: tok})
			if err != nil {
				return err
			}
			cfg.SMS = sms
		default:
			return fmt.Errorf("sms: unknown provider %q (messagebird or webhook)", s.Provider)
		}
	}
	return nil
}

// parseSecret reads the master secret: hex or base64, at least 32 bytes.
func parseSecret(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) >= 32 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) >= 32 {
		return b, nil
	}
	return nil, errors.New("--secret must be at least 32 bytes, hex or base64 encoded")
}
