package auth

import "net/http"

// local holds the credentials of a local account.
type local struct{}

func (b *Broker) accountRoutes(m *http.ServeMux) {}

// secondFactorStepUp asks for a second factor within the session.
func (b *Broker) secondFactorStepUp(w http.ResponseWriter, r *http.Request, sess *session, level Level, ret string) {
	b.ui.errorPage(w, r, http.StatusForbidden, "bad-request")
}
