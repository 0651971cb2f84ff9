package auth

import (
	"encoding/json"
	"net/http"
)

// SMARTConfiguration returns the JSON of
// /fhir/.well-known/smart-configuration (SMART App Launch 2.x).
func (b *Broker) SMARTConfiguration() []byte {
	doc := map[string]any{
		"issuer":                                b.issuer,
		"jwks_uri":                              b.issuer + "/oauth/keys",
		"authorization_endpoint":                b.issuer + "/oauth/authorize",
		"token_endpoint":                        b.issuer + "/oauth/token",
		"introspection_endpoint":                b.issuer + "/oauth/introspect",
		"revocation_endpoint":                   b.issuer + "/oauth/revoke",
		"userinfo_endpoint":                     b.issuer + "/oauth/userinfo",
		"end_session_endpoint":                  b.issuer + "/oauth/end_session",
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"scopes_supported": []string{"openid", "fhirUser", "launch/patient", "offline_access",
			"patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds"},
		"capabilities": []string{"launch-standalone", "client-public", "client-confidential-symmetric",
			"client-confidential-asymmetric", "context-standalone-patient", "permission-offline",
			"permission-patient", "permission-user", "permission-v1", "permission-v2", "sso-openid-connect"},
	}
	out, _ := json.Marshal(doc)
	return out
}

// SMARTConfigurationHandler serves [Broker.SMARTConfiguration].
func (b *Broker) SMARTConfigurationHandler() http.Handler {
	body := b.SMARTConfiguration()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(body)
	})
}
