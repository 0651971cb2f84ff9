package auth

import "net/http"

func (b *Broker) accountRoutes(m *http.ServeMux) {}
