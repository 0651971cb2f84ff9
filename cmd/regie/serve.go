package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"regie"
	"regie/auth"
	"regie/auth/policy"
	"regie/fhir"
	"regie/fhir/search"
	"regie/profiles"
	"regie/server"
	"regie/server/engine"
	"regie/storage"
	"regie/storage/embedded"
)

// serveConfig is the configuration of `regie serve`.
type serveConfig struct {
	Listen          string
	BaseURL         string
	Data            string
	Store           string
	Dev             bool
	LogLevel        string
	MaxBody         int
	ShutdownTimeout time.Duration
	Secret          string
	IdentityConfig  string
	Demo            bool
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&c.BaseURL, "base-url", "", "external URL of the server, the OpenID issuer (default http://<listen>)")
	fs.StringVar(&c.Data, "data", "./data", "directory of the embedded store")
	fs.StringVar(&c.Store, "store", "", "store URL: empty or embedded: for the embedded store in --data (mongodb:// is not available yet)")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: demo data, identity simulators, dev client and /dev endpoints (never in production)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&c.MaxBody, "max-body", 16<<20, "largest accepted request body in bytes")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take to finish on shutdown")
	fs.StringVar(&c.Secret, "secret", "", "master secret, hex or base64, at least 32 bytes (set it with REGIE_SECRET); required outside --dev")
	fs.StringVar(&c.IdentityConfig, "identity-config", "", "JSON file with OAuth clients, upstream identity providers, SMTP and SMS settings")
	fs.BoolVar(&c.Demo, "demo", true, "with --dev: load the demo dossiers into an empty store")
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})), nil
}

// openStore opens the store named by the --store URL.
func openStore(storeURL, dataDir string, log *slog.Logger) (*embedded.Store, error) {
	switch {
	case storeURL == "" || storeURL == "embedded:" || strings.HasPrefix(storeURL, "embedded:"):
		dir := dataDir
		if p := strings.TrimPrefix(storeURL, "embedded:"); p != "" {
			dir = p
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		abs, _ := filepath.Abs(dir)
		log.Info("opening embedded store", "dir", abs)
		return embedded.Open(dir, &embedded.Options{Logger: log.With("component", "storage.embedded")})
	case strings.HasPrefix(storeURL, "mongodb://"), strings.HasPrefix(storeURL, "mongodb+srv://"):
		return nil, errors.New("--store: the MongoDB backend is not available in this build")
	}
	return nil, fmt.Errorf("--store: unknown store URL scheme in %q", storeURL)
}

// components are the parts every command builds on.
type components struct {
	defs      *fhir.Definitions
	validator *fhir.Validator
	store     *embedded.Store
	engine    *engine.Engine
	policy    *policy.Policy
}

// build opens the store and builds the engine with its access policy and
// audit trail.
func build(storeURL, dataDir, baseURL string, log *slog.Logger) (*components, error) {
	defs, err := fhir.LoadDefinitions(profiles.R4())
	if err != nil {
		return nil, err
	}
	val, err := fhir.NewValidator(defs)
	if err != nil {
		return nil, err
	}
	fhirBase := baseURL + server.FHIRPath
	idx, err := search.NewIndexer(defs, search.IndexerConfig{BaseURL: fhirBase})
	if err != nil {
		return nil, err
	}
	parser := search.NewParser(defs, search.Config{BaseURL: fhirBase})
	st, err := openStore(storeURL, dataDir, log)
	if err != nil {
		return nil, err
	}
	pol, err := policy.New(policy.Config{Definitions: defs, Source: st, Records: st, Parser: parser, Logger: log.With("component", "policy")})
	if err != nil {
		st.Close()
		return nil, err
	}
	eng, err := engine.New(engine.Config{
		Definitions: defs,
		Validator:   val,
		Store:       st,
		Indexer:     idx,
		Parser:      parser,
		Policy:      pol,
		Audit:       true,
		Logger:      log.With("component", "engine"),
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &components{defs: defs, validator: val, store: st, engine: eng, policy: pol}, nil
}

// adminContext is the context of administration commands: they act as
// Regie itself, a system principal that the policy does not limit, and
// leave AuditEvents naming it.
func adminContext(ctx context.Context, name string) context.Context {
	return auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindSystem, Subject: "Device/regie-" + name, ClientID: "regie-" + name, Scopes: []string{"system/*.cruds"}})
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	if err := parseFlags(fs, args, os.Getenv); err != nil {
		return err
	}
	logOut := newLogWriter(stderr, 250*time.Millisecond)
	defer logOut.Close()
	log, err := newLogger(logOut, cfg.LogLevel)
	if err != nil {
		return err
	}
	// The OpenID Provider library logs through the default logger.
	slog.SetDefault(log.With("component", "oidc"))
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + strings.Replace(cfg.Listen, "127.0.0.1", "localhost", 1)
	}
	c, err := build(cfg.Store, cfg.Data, cfg.BaseURL, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := c.store.Close(); err != nil {
			log.Error("closing the store", "error", err)
		} else {
			log.Info("store closed")
		}
	}()
	secret, err := parseSecret(cfg.Secret)
	if err != nil {
		return err
	}
	acfg := auth.Config{
		BaseURL:   cfg.BaseURL,
		Secret:    secret,
		Dev:       cfg.Dev,
		Records:   c.store,
		Directory: c.engine.Directory(),
		Auditor:   c.engine,
		Logger:    log,
	}
	if err := loadIdentity(cfg.IdentityConfig, &acfg); err != nil {
		return err
	}
	if cfg.Dev {
		if acfg.DevCitizens, acfg.DevStaff, err = regie.DemoPeople(); err != nil {
			return err
		}
	}
	broker, err := auth.New(ctx, acfg)
	if err != nil {
		return err
	}
	defer broker.Close()
	c.engine.SetNotifier(&engine.MailNotifier{Engine: c.engine, Mailer: broker.Mailer()})
	if cfg.Dev && cfg.Demo {
		if err := loadDemoIfEmpty(ctx, c, log); err != nil {
			return err
		}
	}
	srv, err := server.New(server.Config{
		BaseURL:            cfg.BaseURL,
		MaxBodyBytes:       cfg.MaxBody,
		Logger:             log.With("component", "server"),
		Version:            version,
		Ready:              storeReady(c.store),
		Identity:           broker.Handler(),
		Authenticator:      broker,
		SMARTConfiguration: broker.SMARTConfiguration(),
		Dev:                cfg.Dev,
	}, c.engine)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if cfg.Dev {
		logOut.Flush()
		fmt.Fprintln(stderr, devBanner)
		fmt.Fprintf(stderr, "  dev system client: %s / %s (client_secret_basic, scope system/*.cruds)\n", auth.DevClientID, auth.DevClientSecret)
		fmt.Fprintf(stderr, "  dev tokens:        curl -d subject=Patient/anna-de-vries %s/dev/token\n", cfg.BaseURL)
		fmt.Fprintf(stderr, "  outbox:            %s/dev/outbox\n\n", cfg.BaseURL)
	}
	log.Info("serving", "listen", ln.Addr().String(), "base_url", cfg.BaseURL, "fhir", cfg.BaseURL+server.FHIRPath, "dev", cfg.Dev, "version", version)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "error", err)
	}
	<-errc
	return nil
}

const devBanner = `
################################################################################
##  REGIE DEVELOPMENT MODE: demo data, test identities and /dev endpoints.     ##
##  Never run --dev with real data or on a network others can reach.           ##
################################################################################`

// storeReady reports whether the store answers a read.
func storeReady(st storage.Store) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := st.Read(ctx, "Basic", "readiness-probe")
		if err == nil || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrDeleted) {
			return nil
		}
		return err
	}
}

// loadDemoIfEmpty loads the demo dossiers when the store has no Patient yet.
func loadDemoIfEmpty(ctx context.Context, c *components, log *slog.Logger) error {
	page, err := c.store.Search(ctx, &search.Query{Types: []string{"Patient"}, Count: 1, Total: search.TotalNone})
	if err != nil {
		return err
	}
	if len(page.Resources) > 0 {
		log.Info("store has data: demo dossiers not loaded")
		return nil
	}
	n, err := regie.LoadDemo(adminContext(ctx, "demo"), c.engine, time.Now())
	if err != nil {
		return fmt.Errorf("loading the demo dossiers: %w", err)
	}
	log.Info("demo dossiers loaded", "resources", n)
	return nil
}
