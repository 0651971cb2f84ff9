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
