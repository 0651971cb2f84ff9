package notify_test

import (
	"context"
	"strings"
	"testing"

	"regie/auth/notify"
	"regie/auth/notify/notifytest"
)

func TestSMTPStartTLSAuth(t *testing.T) {
	srv := notifytest.NewSMTPServer(t)
	ctx := context.Background()
	m, err := notify.NewSMTP(notify.SMTPConfig{Host: srv.Host, Port: srv.Port, Username: srv.Username, Password: srv.Password,
		From: "noreply@regie.example", RootCAs: srv.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SendMail(ctx, "client@example.nl", "Activeer uw account", "Hallo,\nklik op de link."); err != nil {
		t.Fatal(err)
	}
	mails := srv.Mails()
	if len(mails) != 1 || mails[0].To[0] != "client@example.nl" || mails[0].From != "noreply@regie.example" ||
		!strings.Contains(mails[0].Data, "Subject: Activeer uw account") || !strings.Contains(mails[0].Data, "klik op de link") {
		t.Fatalf("received %+v", mails)
	}

	t.Run("wrong password", func(t *testing.T) {
		bad, _ := notify.NewSMTP(notify.SMTPConfig{Host: srv.Host, Port: srv.Port, Username: srv.Username, Password: "nope",
			From: "noreply@regie.example", RootCAs: srv.RootCAs})
		if err := bad.SendMail(ctx, "x@example.nl", "s", "b"); err == nil {
			t.Error("sent with a wrong password")
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		bad, _ := notify.NewSMTP(notify.SMTPConfig{Host: srv.Host, Port: srv.Port, Username: srv.Username, Password: srv.Password,
			From: "noreply@regie.example"})
		if err := bad.SendMail(ctx, "x@example.nl", "s", "b"); err == nil {
			t.Error("sent to a server whose certificate is not trusted")
		}
	})
	if n := len(srv.Mails()); n != 1 {
		t.Errorf("%d mails received, want 1", n)
	}
}

func TestMessageBird(t *testing.T) {
	gw := notifytest.NewGateway(t)
	ctx := context.Background()
	mb, err := notify.NewMessageBird(notify.MessageBirdConfig{AccessKey: gw.AccessKey, Originator: "Regie", Endpoint: gw.URL + "/messages"})
	if err != nil {
		t.Fatal(err)
	}
	if err := mb.SendSMS(ctx, "+31612345678", "Uw Regie-code: ABCD-123456"); err != nil {
		t.Fatal(err)
	}
	if got := gw.Messages(); len(got) != 1 || got[0].To != "+31612345678" || got[0].Text != "Uw Regie-code: ABCD-123456" {
		t.Errorf("gateway got %+v", got)
	}
	bad, _ := notify.NewMessageBird(notify.MessageBirdConfig{AccessKey: "wrong", Originator: "Regie", Endpoint: gw.URL + "/messages"})
	if err := bad.SendSMS(ctx, "+31612345678", "x"); err == nil {
		t.Error("wrong access key accepted")
	}
	gw.Fail = true
	if err := mb.SendSMS(ctx, "+31612345678", "x"); err == nil {
		t.Error("gateway failure not reported")
	}
}

func TestWebhook(t *testing.T) {
	gw := notifytest.NewGateway(t)
	ctx := context.Background()
	wh, err := notify.NewWebhook(notify.WebhookConfig{URL: gw.URL + "/webhook", BearerToken: gw.BearerToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.SendSMS(ctx, "+31687654321", "code"); err != nil {
		t.Fatal(err)
	}
	if got := gw.Messages(); len(got) != 1 || got[0].To != "+31687654321" {
		t.Errorf("gateway got %+v", got)
	}
	if _, err := notify.NewWebhook(notify.WebhookConfig{URL: "http://gateway.example/hook"}); err == nil {
		t.Error("plain http webhook accepted")
	}
}
