package auth

import "net/http"

// federation logs people in with upstream OpenID providers.
type federation struct{ b *Broker }

func newFederation(b *Broker) *federation { return &federation{b: b} }

func (f *federation) start(w http.ResponseWriter, r *http.Request)    { http.NotFound(w, r) }
func (f *federation) callback(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }

type simulatorMount struct {
	prefix, providerID, display string
	handler                     http.Handler
}
