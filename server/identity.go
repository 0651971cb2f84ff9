package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux, served in dev mode only
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"regie/auth"
	"regie/auth/policy"
	"regie/server/engine"
)

// Authenticator establishes the principal of a FHIR API request from its
// Authorization header.
type Authenticator interface {
	AuthenticateBearer(ctx context.Context, authorization string, meta auth.RequestMeta) (*auth.Principal, error)
}

// identityPrefixes are the paths the identity handler serves.
var identityPrefixes = []string{"/.well-known/openid-configuration", "/oauth/", "/login/", "/account/", "/helpdesk/"}

// mountIdentity serves the identity broker's net/http handler for its
// paths, through copyingHandler.
func (s *Server) mountIdentity() {
	if s.cfg.Identity == nil {
		return
	}
	h := copyingHandler(s.cfg.Identity)
	prefixes := identityPrefixes
	if s.cfg.Dev {
		prefixes = append(prefixes, "/dev/")
	}
	if s.cfg.Dev {
		// profiles of the running server, for development and benchmarks
		s.app.All("/debug/pprof*", copyingHandler(http.DefaultServeMux))
	}
	for _, p := range prefixes {
		if strings.HasSuffix(p, "/") {
			s.app.All(strings.TrimSuffix(p, "/"), h)
			s.app.All(p+"*", h)
		} else {
			s.app.All(p, h)
		}
	}
}

// copyingHandler adapts a net/http handler to Fiber. Every string and byte
// slice of the request is copied before the handler sees it: fasthttp
// reuses request memory after a handler returns, and an OpenID Provider
// keeps request values (client ids, redirect URIs) in records for later
// requests.
func copyingHandler(h http.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		setInteraction(c, "identity", "")
		fc := c.Context()
		u, err := url.ParseRequestURI(string(fc.RequestURI()))
		if err != nil {
			return errStatus(fiber.StatusBadRequest, "invalid", "malformed request URI", "")
		}
		body := bytes.Clone(fc.Request.Body())
		req, err := http.NewRequestWithContext(c.UserContext(), string(fc.Method()), u.String(), bytes.NewReader(body))
		if err != nil {
			return errStatus(fiber.StatusBadRequest, "invalid", "malformed request", "")
		}
		req.RequestURI = u.RequestURI()
		req.Host = string(fc.Host())
		req.URL.Host = req.Host
		if fc.IsTLS() {
			req.URL.Scheme = "https"
		} else {
			req.URL.Scheme = "http"
		}
		req.RemoteAddr = fc.RemoteAddr().String()
		req.ContentLength = int64(len(body))
		fc.Request.Header.VisitAll(func(k, v []byte) {
			req.Header.Add(string(k), string(v))
		})
		w := &recorder{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(w, req)
		for k, vs := range w.header {
			for i, v := range vs {
				if i == 0 {
					c.Set(k, v)
				} else {
					c.Response().Header.Add(k, v)
				}
			}
		}
		c.Status(w.status)
		return c.Send(w.body.Bytes())
	}
}

// recorder collects a net/http response.
type recorder struct {
	header http.Header
	body   bytes.Buffer
	status int
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	return r.body.Write(b)
}

func (r *recorder) WriteHeader(status int) {
	if r.wrote {
		return
	}
	r.wrote, r.status = true, status
}

// authenticate establishes the principal of a FHIR request and the request
// details the engine audits. Without an authenticator the API is open
// (tools and tests of the REST layer).
func (s *Server) authenticate(c *fiber.Ctx) error {
	ri := engine.RequestInfo{ID: requestID(c), Address: c.IP()}
	if reason := c.Get("X-Regie-Break-Glass"); reason != "" {
		reason = strings.TrimSpace(reason)
		if utf8.RuneCountInString(reason) < engine.MinBreakGlassReason {
			return errStatus(fiber.StatusBadRequest, "invalid", "a break-the-glass reason needs at least 10 characters", "X-Regie-Break-Glass")
		}
		ri.BreakGlass = reason
	}
	ctx := engine.WithRequestInfo(c.UserContext(), ri)
	if s.cfg.Authenticator != nil {
		p, err := s.cfg.Authenticator.AuthenticateBearer(ctx, c.Get(fiber.HeaderAuthorization), auth.RequestMeta{IP: c.IP(), UserAgent: c.Get(fiber.HeaderUserAgent)})
		if err != nil {
			return err
		}
		ctx = auth.WithPrincipal(ctx, p)
	}
	c.SetUserContext(ctx)
	return c.Next()
}

// isStepUp reports whether err asks for a (fresh) second factor, which API
// clients are told with RFC 9470's insufficient_user_authentication.
func isStepUp(err error) bool {
	return errors.Is(err, policy.ErrStepUp) || errors.Is(err, auth.ErrStepUpRequired)
}
