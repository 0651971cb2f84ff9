package server

import (
	"bytes"
	"encoding/json"
	"mime"
	"strings"

	"github.com/gofiber/fiber/v2"
)

const (
	contentTypeFHIR = "application/fhir+json; charset=utf-8"
	contentTypeJSON = "application/json; charset=utf-8"
)

// format is how a FHIR response is written.
type format struct {
	contentType string
	pretty      bool
}

const keyFormat localKey = 100

// negotiate checks _format and Accept and records the response format. JSON
// is the only format served; a client that accepts only XML gets 406.
func (s *Server) negotiate(c *fiber.Ctx) error {
	f := format{contentType: contentTypeFHIR}
	c.Locals(keyFormat, f) // error responses before the end of negotiation are JSON too
	if p := c.Query("_pretty"); p == "true" {
		f.pretty = true
	}
	if q := c.Query("_format"); q != "" {
		switch strings.ToLower(strings.TrimSpace(q)) {
		case "json", "application/fhir+json", "application/json", "application/json+fhir":
			if strings.Contains(q, "application/json") {
				f.contentType = contentTypeJSON
			}
		case "xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir":
			return errStatus(fiber.StatusNotAcceptable, "not-supported", "XML is not supported; use _format=json or application/fhir+json", "_format")
		default:
			return errStatus(fiber.StatusNotAcceptable, "not-supported", "unknown _format; use json", "_format")
		}
	} else if accept := c.Get(fiber.HeaderAccept); accept != "" {
		ct, ok := acceptJSON(accept)
		if !ok {
			return errStatus(fiber.StatusNotAcceptable, "not-supported", "only application/fhir+json and application/json can be served", "Accept")
		}
		f.contentType = ct
	}
	c.Locals(keyFormat, f)
	return c.Next()
}

// acceptJSON reports whether an Accept header admits a JSON response and
// which content type to answer with.
func acceptJSON(accept string) (string, bool) {
	best := ""
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok && (q == "0" || q == "0.0" || q == "0.00" || q == "0.000") {
			continue
		}
		switch mt {
		case "application/fhir+json", "application/json+fhir":
			return contentTypeFHIR, true
		case "application/json":
			if best == "" {
				best = contentTypeJSON
			}
		case "*/*", "application/*":
			if best == "" {
				best = contentTypeFHIR
			}
		case "text/html":
			// a browser: it also accepts */* in practice
			if best == "" {
				best = contentTypeFHIR
			}
		}
	}
	return best, best != ""
}

func formatOf(c *fiber.Ctx) format {
	f, ok := c.Locals(keyFormat).(format)
	if !ok {
		return format{contentType: contentTypeFHIR}
	}
	return f
}

// send writes a JSON body in the negotiated format.
func send(c *fiber.Ctx, status int, body []byte) error {
	f := formatOf(c)
	if f.pretty {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, f.contentType)
	return c.Send(body)
}

// requestBody returns the body of a request that must carry a FHIR resource
// in JSON, checking its content type and encoding.
func requestBody(c *fiber.Ctx, allowed ...string) ([]byte, error) {
	if enc := c.Get(fiber.HeaderContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
		return nil, errStatus(fiber.StatusUnsupportedMediaType, "not-supported", "compressed request bodies are not supported", "Content-Encoding")
	}
	ct := c.Get(fiber.HeaderContentType)
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		return nil, errStatus(fiber.StatusUnsupportedMediaType, "not-supported", "the request needs Content-Type: "+strings.Join(allowed, " or "), "Content-Type")
	}
	ok := false
	for _, a := range allowed {
		if strings.EqualFold(mt, a) {
			ok = true
		}
	}
	if !ok {
		if strings.Contains(mt, "xml") {
			return nil, errStatus(fiber.StatusUnsupportedMediaType, "not-supported", "XML is not supported; send JSON with Content-Type: "+strings.Join(allowed, " or "), "Content-Type")
		}
		return nil, errStatus(fiber.StatusUnsupportedMediaType, "not-supported", "unsupported Content-Type; use "+strings.Join(allowed, " or "), "Content-Type")
	}
	body := c.Request().Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errStatus(fiber.StatusBadRequest, "required", "the request body is empty", "")
	}
	return body, nil
}

var jsonTypes = []string{"application/fhir+json", "application/json"}

// preferReturn reads Prefer: return=… (minimal, representation or
// OperationOutcome; default representation).
func preferReturn(c *fiber.Ctx) string {
	for _, p := range strings.Split(c.Get("Prefer"), ";") {
		p = strings.TrimSpace(p)
		for _, q := range strings.Split(p, ",") {
			q = strings.TrimSpace(q)
			if v, ok := strings.CutPrefix(q, "return="); ok {
				switch strings.Trim(v, `"`) {
				case "minimal":
					return "minimal"
				case "OperationOutcome":
					return "OperationOutcome"
				}
			}
		}
	}
	return "representation"
}
