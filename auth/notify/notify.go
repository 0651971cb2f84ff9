// Package notify sends e-mail and text messages for the identity broker:
// an SMTP client (STARTTLS or implicit TLS, with authentication) and SMS
// gateway clients for MessageBird's REST API and for a generic JSON webhook.
// Every sender is safe for concurrent use and honours its context.
package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"
)

// SMTPConfig configures the SMTP client.
type SMTPConfig struct {
	Host string
	// Port defaults to 587 (submission with STARTTLS), 465 with ImplicitTLS.
	Port int
	// Username and Password authenticate (PLAIN, or LOGIN when the server
	// offers only that); empty for none.
	Username, Password string
	// From is the sender address.
	From string
	// ImplicitTLS connects with TLS from the start (port 465); otherwise
	// STARTTLS is mandatory.
	ImplicitTLS bool
	// RootCAs verifies the server certificate (nil: the system pool).
	RootCAs *x509.CertPool
	// Timeout per message (default 15 s).
	Timeout time.Duration
}

// SMTP sends e-mail through an SMTP server. TLS is always required.
type SMTP struct{ cfg SMTPConfig }

// NewSMTP validates cfg and returns a client.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	if cfg.Host == "" || !strings.Contains(cfg.From, "@") {
		return nil, errors.New("notify: smtp: host and from address are required")
	}
	if cfg.Port == 0 {
		cfg.Port = 587
		if cfg.ImplicitTLS {
			cfg.Port = 465
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	return &SMTP{cfg: cfg}, nil
}

// SendMail sends a plain-text message.
func (s *SMTP) SendMail(ctx context.Context, to, subject, body string) error {
	m := mail.NewMsg()
	if err := m.From(s.cfg.From); err != nil {
		return fmt.Errorf("notify: smtp: from: %w", err)
	}
	if err := m.To(to); err != nil {
		return fmt.Errorf("notify: smtp: recipient: %w", err)
	}
	m.Subject(subject)
	m.SetBodyString(mail.TypeTextPlain, body)
	opts := []mail.Option{
		mail.WithPort(s.cfg.Port),
		mail.WithTimeout(s.cfg.Timeout),
		mail.WithTLSConfig(&tls.Config{ServerName: s.cfg.Host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}),
	}
	if s.cfg.ImplicitTLS {
		opts = append(opts, mail.WithSSL())
	} else {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password),
			mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover))
	}
	c, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("notify: smtp: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("notify: smtp: send: %w", err)
	}
	return nil
}

// MessageBirdConfig configures the MessageBird SMS client.
type MessageBirdConfig struct {
	// AccessKey is the live (or test) API key.
	AccessKey string
	// Originator is the sender name (≤ 11 characters) or number.
	Originator string
	// Endpoint defaults to https://rest.messagebird.com/messages.
	Endpoint string
	// Client defaults to an http.Client with a 10 s timeout.
	Client *http.Client
}

// MessageBird sends text messages through MessageBird's REST API
// (POST /messages, "Authorization: AccessKey …").
type MessageBird struct{ cfg MessageBirdConfig }

// NewMessageBird validates cfg and returns a client.
func NewMessageBird(cfg MessageBirdConfig) (*MessageBird, error) {
	if cfg.AccessKey == "" || cfg.Originator == "" {
		return nil, errors.New("notify: messagebird: access key and originator are required")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "https://rest.messagebird.com/messages"
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &MessageBird{cfg: cfg}, nil
}

// SendSMS sends text to the number to (E.164, "+316…").
func (m *MessageBird) SendSMS(ctx context.Context, to, text string) error {
	body, _ := json.Marshal(map[string]any{
		"originator": m.cfg.Originator,
		"recipients": []string{strings.TrimPrefix(to, "+")},
		"body":       text,
	})
	return post(ctx, m.cfg.Client, m.cfg.Endpoint, "AccessKey "+m.cfg.AccessKey, body, "messagebird")
}

// WebhookConfig configures the generic JSON SMS webhook.
type WebhookConfig struct {
	// URL receives POST {"to": "+316…", "text": "…"}.
	URL string
	// BearerToken, when set, is sent as "Authorization: Bearer …".
	BearerToken string
	// Client defaults to an http.Client with a 10 s timeout.
	Client *http.Client
}

// Webhook sends text messages to a JSON webhook of an SMS gateway.
type Webhook struct{ cfg WebhookConfig }

// NewWebhook validates cfg and returns a client.
func NewWebhook(cfg WebhookConfig) (*Webhook, error) {
	if !strings.HasPrefix(cfg.URL, "https://") && !strings.HasPrefix(cfg.URL, "http://127.0.0.1") && !strings.HasPrefix(cfg.URL, "http://localhost") {
		return nil, errors.New("notify: webhook: URL must be https (http only on loopback)")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Webhook{cfg: cfg}, nil
}

// SendSMS posts the message to the webhook.
func (w *Webhook) SendSMS(ctx context.Context, to, text string) error {
	body, _ := json.Marshal(map[string]string{"to": to, "text": text})
	auth := ""
	if w.cfg.BearerToken != "" {
		auth = "Bearer " + w.cfg.BearerToken
	}
	return post(ctx, w.cfg.Client, w.cfg.URL, auth, body, "webhook")
}

func post(ctx context.Context, c *http.Client, url, auth string, body []byte, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: %s: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("notify: %s: %w", name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("notify: %s: gateway answered %d", name, resp.StatusCode)
	}
	return nil
}
