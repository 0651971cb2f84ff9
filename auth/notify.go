package auth

import "context"

// Mailer sends e-mail. auth/notify provides an SMTP implementation.
// Implementations are safe for concurrent use and honour ctx.
type Mailer interface {
	SendMail(ctx context.Context, to, subject, body string) error
}

// SMSSender sends text messages. auth/notify provides SMS gateway
// implementations. Implementations are safe for concurrent use and honour ctx.
type SMSSender interface {
	SendSMS(ctx context.Context, to, text string) error
}

// Mailer returns the broker's mailer: the configured one, or in dev mode
// the outbox at /dev/outbox. Other parts of Regie send their e-mail
// (notifications to clients) through it.
func (b *Broker) Mailer() Mailer { return b.cfg.Mailer }
