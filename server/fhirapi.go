package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"regie/fhir"
	"regie/server/engine"
	"regie/storage"
)

// routes registers every route. The FHIR API is generic over resource types:
// a handful of routes over :type, not one per type.
func (s *Server) routes() {
	s.app.Get("/healthz", func(c *fiber.Ctx) error {
		return c.JSON(fiber.Map{"status": "ok"})
	})
	s.app.Get("/readyz", func(c *fiber.Ctx) error {
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(c.UserContext()); err != nil {
				s.log.Warn("not ready", "error", err)
				return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable"})
			}
		}
		return c.JSON(fiber.Map{"status": "ready"})
	})
	s.app.Get("/metrics", s.metricsHandler())

	s.mountIdentity()
	f := s.app.Group(FHIRPath, s.negotiate)
	f.Get("/metadata", s.metadata)
	if s.cfg.SMARTConfiguration != nil {
		f.Get("/.well-known/smart-configuration", func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, "application/json")
			return c.Send(s.cfg.SMARTConfiguration)
		})
	}
	// everything below needs a principal when an authenticator is configured
	f.Use(s.authenticate)
	f.Get("/", s.searchSystem)
	f.Post("/", s.bundle)
	f.Post("/_search", s.searchSystem)
	f.Get("/_history", s.history)
	f.Get("/:type/_history", s.history)
	f.Get("/:type/:id/_history", s.history)
	f.Get("/:type/:id/_history/:vid", s.vread)
	f.Get("/Patient/:id/$everything", s.everything)
	f.Post("/Patient/:id/$end-break-glass", s.endBreakGlass)
	f.Get("/:comp/:id/:type", s.searchCompartment)
	f.Get("/:type/:id", s.read)
	f.Get("/:type", s.searchType)
	f.Post("/:type/_search", s.searchType)
	f.Post("/:type", s.create)
	f.Put("/:type/:id", s.update)
	f.Put("/:type", s.conditionalUpdate)
	f.Delete("/:type", s.conditionalDelete)
	f.Patch("/:type/:id", s.patch)
	f.Delete("/:type/:id", s.delete)
	f.All("/*", func(c *fiber.Ctx) error {
		return errStatus(fiber.StatusNotFound, "not-supported", "no such FHIR endpoint: "+c.Method()+" "+c.Path(), "")
	})
	s.app.Use(func(c *fiber.Ctx) error {
		return fiber.ErrNotFound
	})
}

func (s *Server) metadata(c *fiber.Ctx) error {
	setInteraction(c, "capabilities", "")
	return send(c, fiber.StatusOK, s.capStmt)
}

// resourceHeaders sets ETag and Last-Modified for a resource version.
func resourceHeaders(c *fiber.Ctx, r *fhir.Resource) {
	c.Set(fiber.HeaderETag, `W/"`+r.VersionID()+`"`)
	c.Set(fiber.HeaderLastModified, r.LastUpdated.UTC().Format(http.TimeFormat))
}

func (s *Server) location(r *fhir.Resource) string {
	return s.fhirURL + "/" + r.Type + "/" + r.ID + "/_history/" + r.VersionID()
}

func (s *Server) read(c *fiber.Ctx) error {
	typ, id := c.Params("type"), c.Params("id")
	setInteraction(c, "read", typ)
	r, err := s.eng.Read(c.UserContext(), typ, id)
	if err != nil {
		if r != nil && r.Deleted {
			resourceHeaders(c, r)
		}
		return err
	}
	resourceHeaders(c, r)
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" {
		if v, err := engine.ParseVersion(inm); err == nil && v == r.Version {
			c.Status(fiber.StatusNotModified)
			return nil
		}
	}
	if ims := c.Get(fiber.HeaderIfModifiedSince); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !r.LastUpdated.Truncate(time.Second).After(t) {
			c.Status(fiber.StatusNotModified)
			return nil
		}
	}
	return send(c, fiber.StatusOK, r.Body)
}

func (s *Server) vread(c *fiber.Ctx) error {
	typ, id := c.Params("type"), c.Params("id")
	setInteraction(c, "vread", typ)
	r, err := s.eng.VRead(c.UserContext(), typ, id, c.Params("vid"))
	if err != nil {
		if r != nil && r.Deleted {
			resourceHeaders(c, r)
		}
		return err
	}
	resourceHeaders(c, r)
	return send(c, fiber.StatusOK, r.Body)
}

// answerWrite writes the response of a create, update or patch according to
// Prefer: return.
func (s *Server) answerWrite(c *fiber.Ctx, res *engine.Result) error {
	r := res.Resource
	status := fiber.StatusOK
	if res.Created {
		status = fiber.StatusCreated
	}
	resourceHeaders(c, r)
	c.Set(fiber.HeaderLocation, s.location(r))
	switch preferReturn(c) {
	case "minimal":
		c.Status(status)
		return nil
	case "OperationOutcome":
		msg := "updated " + r.Type + "/" + r.ID + " to version " + r.VersionID()
		if res.Created {
			msg = "created " + r.Type + "/" + r.ID
		}
		return send(c, status, renderOutcome([]issue{{Severity: "information", Code: "informational", Details: msg}}, ""))
	}
	return send(c, status, r.Body)
}

func (s *Server) create(c *fiber.Ctx) error {
	typ := c.Params("type")
	setInteraction(c, "create", typ)
	if err := s.eng.CheckType(typ); err != nil {
		return err
	}
	body, err := requestBody(c, jsonTypes...)
	if err != nil {
		return err
	}
	var res *engine.Result
	if cond := c.Get("If-None-Exist"); cond != "" {
		res, err = s.eng.ConditionalCreate(c.UserContext(), typ, body, cond)
		if err == nil && !res.Created {
			// an existing match: 200 with the resource, nothing written
			resourceHeaders(c, res.Resource)
			return send(c, fiber.StatusOK, res.Resource.Body)
		}
	} else {
		res, err = s.eng.Create(c.UserContext(), typ, body)
	}
	if err != nil {
		return err
	}
	return s.answerWrite(c, res)
}

func (s *Server) update(c *fiber.Ctx) error {
	typ, id := c.Params("type"), c.Params("id")
	setInteraction(c, "update", typ)
	if err := s.eng.CheckType(typ); err != nil {
		return err
	}
	body, err := requestBody(c, jsonTypes...)
	if err != nil {
		return err
	}
	res, err := s.eng.Update(c.UserContext(), typ, id, body, c.Get(fiber.HeaderIfMatch))
	if err != nil {
		return err
	}
	return s.answerWrite(c, res)
}

func (s *Server) patch(c *fiber.Ctx) error {
	typ, id := c.Params("type"), c.Params("id")
	setInteraction(c, "patch", typ)
	if err := s.eng.CheckType(typ); err != nil {
		return err
	}
	body, err := requestBody(c, "application/json-patch+json")
	if err != nil {
		return err
	}
	res, err := s.eng.Patch(c.UserContext(), typ, id, body, c.Get(fiber.HeaderIfMatch))
	if err != nil {
		return err
	}
	return s.answerWrite(c, res)
}

func (s *Server) delete(c *fiber.Ctx) error {
	typ, id := c.Params("type"), c.Params("id")
	setInteraction(c, "delete", typ)
	res, err := s.eng.Delete(c.UserContext(), typ, id, c.Get(fiber.HeaderIfMatch))
	if err != nil {
		return err
	}
	if res.Resource != nil {
		c.Set(fiber.HeaderETag, `W/"`+res.Resource.VersionID()+`"`)
	}
	if preferReturn(c) == "OperationOutcome" {
		return send(c, fiber.StatusOK, renderOutcome([]issue{{Severity: "information", Code: "informational", Details: "deleted"}}, ""))
	}
	c.Status(fiber.StatusNoContent)
	return nil
}

func (s *Server) history(c *fiber.Ctx) error {
	typ, id := c.Params("type"), c.Params("id")
	setInteraction(c, "history", typ)
	q := &storage.HistoryQuery{Type: typ, ID: id, Cursor: c.Query("_cursor")}
	if typ != "" {
		if err := s.eng.CheckType(typ); err != nil {
			return err
		}
	}
	if v := c.Query("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errStatus(fiber.StatusBadRequest, "value", "_count must be a non-negative integer", "_count")
		}
		q.Count = min(n, storage.MaxCount)
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"_since", &q.Since}, {"_at", &q.At}} {
		if v := c.Query(p.name); v != "" {
			t, err := parseInstant(v)
			if err != nil {
				return errStatus(fiber.StatusBadRequest, "value", p.name+" must be a FHIR instant or dateTime", p.name)
			}
			*p.dst = t
		}
	}
	page, err := s.eng.History(c.UserContext(), q)
	if err != nil {
		return err
	}
	return send(c, fiber.StatusOK, s.historyBundle(c, q, page))
}

func (s *Server) bundle(c *fiber.Ctx) error {
	setInteraction(c, "batch", "Bundle")
	body, err := requestBody(c, jsonTypes...)
	if err != nil {
		return err
	}
	typ, results, err := s.eng.Bundle(c.UserContext(), body)
	if typ == "transaction" {
		setInteraction(c, "transaction", "Bundle")
	}
	if err != nil {
		return err
	}
	return send(c, fiber.StatusOK, s.responseBundle(c, typ+"-response", results))
}

func (s *Server) conditionalUpdate(c *fiber.Ctx) error {
	typ := c.Params("type")
	setInteraction(c, "update", typ)
	if err := s.eng.CheckType(typ); err != nil {
		return err
	}
	cond := string(c.Request().URI().QueryString())
	if cond == "" {
		return errStatus(fiber.StatusMethodNotAllowed, "not-supported", "PUT needs an id (Type/id) or a condition (Type?search)", "")
	}
	body, err := requestBody(c, jsonTypes...)
	if err != nil {
		return err
	}
	res, err := s.eng.ConditionalUpdate(c.UserContext(), typ, body, cond, c.Get(fiber.HeaderIfMatch))
	if err != nil {
		return err
	}
	return s.answerWrite(c, res)
}

func (s *Server) conditionalDelete(c *fiber.Ctx) error {
	typ := c.Params("type")
	setInteraction(c, "delete", typ)
	cond := string(c.Request().URI().QueryString())
	if cond == "" {
		return errStatus(fiber.StatusMethodNotAllowed, "not-supported", "DELETE needs an id (Type/id) or a condition (Type?search)", "")
	}
	res, err := s.eng.ConditionalDelete(c.UserContext(), typ, cond)
	if err != nil {
		return err
	}
	if res.Resource != nil {
		c.Set(fiber.HeaderETag, `W/"`+res.Resource.VersionID()+`"`)
	}
	c.Status(fiber.StatusNoContent)
	return nil
}

func (s *Server) endBreakGlass(c *fiber.Ctx) error {
	setInteraction(c, "operation", "Patient")
	if err := s.eng.EndBreakGlass(c.UserContext(), c.Params("id")); err != nil {
		return err
	}
	return send(c, fiber.StatusOK, renderOutcome([]issue{{Severity: "information", Code: "informational", Details: "break-the-glass access ended"}}, ""))
}
