// Package server is Regie's HTTP edge: the Fiber application with the FHIR
// REST API (generic over every resource type), operations endpoints, health
// and metrics, and the middleware every request passes (request id,
// deadline, recovery, access log, principal). Handlers call the interaction
// engine in server/engine and map its errors to OperationOutcomes in one
// place (outcome.go).
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/prometheus/client_golang/prometheus"

	"regie/server/engine"
)

// Config configures a Server.
type Config struct {
	// BaseURL is the external URL of the server, without a trailing slash
	// (default http://localhost:8080). The FHIR base is BaseURL + "/fhir".
	BaseURL string
	// MaxBodyBytes limits request bodies (default 16 MiB).
	MaxBodyBytes int
	// RequestTimeout bounds the work done for one request (default 60 s).
	RequestTimeout time.Duration
	// Logger receives the access log and errors (default: discard).
	Logger *slog.Logger
	// Version is reported in the CapabilityStatement.
	Version string
	// Ready reports whether the server can serve (the store is reachable);
	// nil means always ready.
	Ready func(ctx context.Context) error
	// Identity serves the identity broker's endpoints (OpenID Provider,
	// login, account pages); nil serves none.
	Identity http.Handler
	// Authenticator establishes the principal of FHIR API requests from
	// their bearer token; nil leaves the FHIR API open (tools and tests).
	Authenticator Authenticator
	// SMARTConfiguration is served at /fhir/.well-known/smart-configuration.
	SMARTConfiguration []byte
	// Dev mounts the development endpoints under /dev/.
	Dev bool
}

func (c *Config) setDefaults() {
	if c.BaseURL == "" {
		c.BaseURL = "http://localhost:8080"
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		return fmt.Errorf("server: base URL %q must start with http:// or https://", c.BaseURL)
	}
	return nil
}

// FHIRPath is the path of the FHIR base under the server's base URL.
const FHIRPath = "/fhir"

// Server is the HTTP server.
type Server struct {
	cfg     Config
	app     *fiber.App
	eng     *engine.Engine
	log     *slog.Logger
	fhirURL string
	metrics *metrics
	base    context.Context
	cancel  context.CancelFunc
	capStmt []byte
}

// New builds the server and its routes.
func New(cfg Config, eng *engine.Engine) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if eng == nil {
		return nil, errors.New("server: no engine")
	}
	s := &Server{cfg: cfg, eng: eng, log: cfg.Logger, fhirURL: cfg.BaseURL + FHIRPath}
	s.base, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(prometheus.NewRegistry())
	s.app = fiber.New(fiber.Config{
		AppName:               "regie",
		ErrorHandler:          s.errorHandler,
		BodyLimit:             cfg.MaxBodyBytes,
		DisableStartupMessage: true,
		// Strings taken from a request never alias fasthttp's reused buffers.
		Immutable:          true,
		ReadTimeout:        cfg.RequestTimeout,
		WriteTimeout:       cfg.RequestTimeout,
		IdleTimeout:        2 * time.Minute,
		CaseSensitive:      true,
		StrictRouting:      false,
		UnescapePath:       false,
		ReduceMemoryUsage:  false,
		EnableIPValidation: true,
	})
	rec := recover.New(recover.Config{
		EnableStackTrace: true,
		StackTraceHandler: func(c *fiber.Ctx, e any) {
			s.log.Error("panic", slog.String("request_id", requestID(c)), slog.Any("panic", e), slog.String("stack", string(debug.Stack())))
		},
	})
	// The outer recover catches panics in the middleware itself; the inner
	// one turns a handler's panic into an error that the access log sees.
	s.app.Use(rec, s.requestContext, s.accessLog, rec)
	s.routes()
	var err error
	if s.capStmt, err = s.capabilityStatement(); err != nil {
		return nil, err
	}
	return s, nil
}

// App returns the Fiber application (for tests: app.Test(req)).
func (s *Server) App() *fiber.App { return s.app }

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown stops accepting connections and waits for in-flight requests to
// finish, up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.cancel()
	return s.app.ShutdownWithContext(ctx)
}

// locals keys: unexported types so that no other package can collide.
type localKey int

const (
	keyRequestID localKey = iota
	keyInteraction
	keyType
)

// requestContext gives every request an id and a context with a deadline,
// derived from the server's base context.
func (s *Server) requestContext(c *fiber.Ctx) error {
	rid := c.Get("X-Request-Id")
	if !validRequestID(rid) {
		var b [12]byte
		_, _ = rand.Read(b[:])
		rid = hex.EncodeToString(b[:])
	}
	c.Locals(keyRequestID, rid)
	c.Set("X-Request-Id", rid)
	ctx, cancel := context.WithTimeout(s.base, s.cfg.RequestTimeout)
	defer cancel()
	c.SetUserContext(withRequestID(ctx, rid))
	return c.Next()
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func requestID(c *fiber.Ctx) string {
	rid, _ := c.Locals(keyRequestID).(string)
	return rid
}

type ridKey struct{}

func withRequestID(ctx context.Context, rid string) context.Context {
	return context.WithValue(ctx, ridKey{}, rid)
}

// RequestIDFrom returns the request id carried by ctx.
func RequestIDFrom(ctx context.Context) string {
	s, _ := ctx.Value(ridKey{}).(string)
	return s
}

// setInteraction names the FHIR interaction a handler performs, for metrics
// and the access log.
func setInteraction(c *fiber.Ctx, interaction, typ string) {
	c.Locals(keyInteraction, interaction)
	c.Locals(keyType, typ)
}

func routeOf(c *fiber.Ctx) string {
	if r := c.Route(); r != nil {
		return r.Path
	}
	return ""
}

// accessLog logs one line per request (method, route pattern, status,
// duration; never the query string, which can hold personal data) and
// records the metrics.
func (s *Server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	if err != nil {
		if herr := s.errorHandler(c, err); herr != nil {
			return herr
		}
	}
	status := c.Response().StatusCode()
	d := time.Since(start)
	interaction, _ := c.Locals(keyInteraction).(string)
	if interaction == "" {
		interaction = "other"
	}
	typ, _ := c.Locals(keyType).(string)
	s.metrics.observe(interaction, typ, status, d)
	s.log.LogAttrs(c.UserContext(), slog.LevelInfo, "request",
		slog.String("request_id", requestID(c)),
		slog.String("method", c.Method()),
		slog.String("route", routeOf(c)),
		slog.String("interaction", interaction),
		slog.Int("status", status),
		slog.Float64("ms", float64(d.Microseconds())/1000),
	)
	return nil
}
