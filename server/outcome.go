package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gofiber/fiber/v2"

	"regie/auth"
	"regie/fhir"
	"regie/server/engine"
	"regie/storage"
)

// issue is one OperationOutcome issue as rendered.
type issue struct {
	Severity    string
	Code        string
	Details     string
	Diagnostics string
	Expression  string
}

// outcomeFor maps an error to its HTTP status and OperationOutcome issues.
// It is the only place where domain errors become HTTP: handlers return
// errors and the Fiber error handler calls this.
func outcomeFor(err error) (int, []issue) {
	var (
		verr     *fhir.ValidationError
		entryErr *engine.EntryError
		typeErr  *engine.UnknownTypeError
		fe       *fiber.Error
		he       *httpError
	)
	switch {
	case errors.As(err, &entryErr):
		status, issues := outcomeFor(entryErr.Err)
		prefix := fmt.Sprintf("Bundle.entry[%d]", entryErr.Index)
		for i := range issues {
			if issues[i].Expression == "" {
				issues[i].Expression = prefix
			} else {
				issues[i].Expression = prefix + "." + strings.TrimPrefix(issues[i].Expression, ".")
			}
		}
		return status, issues
	case errors.As(err, &he):
		return he.status, []issue{{Severity: "error", Code: he.code, Details: he.msg, Expression: he.expr}}
	case errors.As(err, &verr):
		var issues []issue
		for _, is := range verr.Issues {
			sev := "error"
			if is.Warning {
				sev = "warning"
			}
			issues = append(issues, issue{Severity: sev, Code: string(is.Code), Details: is.Details, Diagnostics: is.Diagnostics, Expression: is.Path})
		}
		status := fiber.StatusBadRequest
		if len(verr.Issues) > 0 && verr.Issues[0].Code == fhir.IssueNotSupported && strings.HasSuffix(verr.Issues[0].Path, "resourceType") {
			status = fiber.StatusBadRequest
		}
		return status, issues
	case errors.As(err, &typeErr):
		return fiber.StatusNotFound, []issue{{Severity: "error", Code: "not-supported", Details: "unknown resource type", Diagnostics: fmt.Sprintf("%q is not an R4 resource type", typeErr.Type)}}
	case errors.Is(err, storage.ErrNotFound):
		return fiber.StatusNotFound, []issue{{Severity: "error", Code: "not-found", Details: "the resource does not exist"}}
	case errors.Is(err, storage.ErrDeleted):
		return fiber.StatusGone, []issue{{Severity: "error", Code: "deleted", Details: "the resource has been deleted"}}
	case errors.Is(err, storage.ErrVersionConflict):
		return fiber.StatusPreconditionFailed, []issue{{Severity: "error", Code: "conflict", Details: "the resource has changed: the version in If-Match is not the current version"}}
	case errors.Is(err, engine.ErrMultipleMatches):
		return fiber.StatusPreconditionFailed, []issue{{Severity: "error", Code: "multiple-matches", Details: "the condition matches more than one resource"}}
	case errors.Is(err, storage.ErrExists):
		return fiber.StatusConflict, []issue{{Severity: "error", Code: "duplicate", Details: "the resource already exists"}}
	case errors.Is(err, storage.ErrInvalidCursor):
		return fiber.StatusBadRequest, []issue{{Severity: "error", Code: "invalid", Details: "the paging cursor is not valid (anymore); start the search again", Expression: "_cursor"}}
	case errors.Is(err, storage.ErrUnsupported):
		return fiber.StatusBadRequest, []issue{{Severity: "error", Code: "not-supported", Details: "this request is not supported"}}
	case isStepUp(err):
		return fiber.StatusForbidden, []issue{{Severity: "error", Code: "security", Details: "this needs a second factor passed in the last five minutes; authenticate again with max_age=300 or acr_values"}}
	case errors.Is(err, engine.ErrBreakGlassReason):
		return fiber.StatusBadRequest, []issue{{Severity: "error", Code: "invalid", Details: "a break-the-glass reason needs at least 10 characters", Expression: "X-Regie-Break-Glass"}}
	case errors.Is(err, auth.ErrUnauthenticated):
		return fiber.StatusUnauthorized, []issue{{Severity: "error", Code: "login", Details: "authentication is required"}}
	case errors.Is(err, auth.ErrForbidden):
		return fiber.StatusForbidden, []issue{{Severity: "error", Code: "forbidden", Details: "you may not do this"}}
	case errors.Is(err, context.DeadlineExceeded):
		return fiber.StatusServiceUnavailable, []issue{{Severity: "error", Code: "timeout", Details: "the request took too long"}}
	case errors.As(err, &fe):
		code := "processing"
		switch fe.Code {
		case fiber.StatusNotFound:
			code = "not-found"
		case fiber.StatusRequestEntityTooLarge:
			code = "too-costly"
		case fiber.StatusMethodNotAllowed:
			code = "not-supported"
		}
		if fe.Code >= 500 {
			code = "exception"
		}
		return fe.Code, []issue{{Severity: "error", Code: code, Details: fe.Message}}
	}
	return fiber.StatusInternalServerError, []issue{{Severity: "fatal", Code: "exception", Details: "internal error"}}
}

// httpError is a client error found by the HTTP layer itself (content type,
// headers, URL), with the status it answers.
type httpError struct {
	status int
	code   string
	msg    string
	expr   string
}

func (e *httpError) Error() string { return "server: " + e.msg }

func errStatus(status int, code, msg, expr string) error {
	return &httpError{status: status, code: code, msg: msg, expr: expr}
}

// renderOutcome writes an OperationOutcome.
func renderOutcome(issues []issue, requestID string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"resourceType":"OperationOutcome"`...)
	if requestID != "" {
		b = append(b, `,"id":`...)
		b = fhir.AppendString(b, requestID)
	}
	b = append(b, `,"issue":[`...)
	for i, is := range issues {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"severity":`...)
		b = fhir.AppendString(b, is.Severity)
		b = append(b, `,"code":`...)
		b = fhir.AppendString(b, is.Code)
		if is.Details != "" {
			b = append(b, `,"details":{"text":`...)
			b = fhir.AppendString(b, is.Details)
			b = append(b, '}')
		}
		if is.Diagnostics != "" {
			b = append(b, `,"diagnostics":`...)
			b = fhir.AppendString(b, is.Diagnostics)
		}
		if is.Expression != "" {
			b = append(b, `,"expression":[`...)
			b = fhir.AppendString(b, is.Expression)
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// errorHandler is Fiber's error handler: every error a handler returns, and
// every panic recovered, ends here.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	status, issues := outcomeFor(err)
	rid := requestID(c)
	if status >= 500 {
		if status == fiber.StatusInternalServerError {
			issues[0].Diagnostics = "request id " + rid
		}
		s.log.ErrorContext(c.UserContext(), "request failed", slog.String("request_id", rid), slog.String("route", routeOf(c)), slog.Any("error", err))
	} else {
		s.log.DebugContext(c.UserContext(), "client error", slog.String("request_id", rid), slog.Int("status", status), slog.String("error", err.Error()))
	}
	if isStepUp(err) {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer error="insufficient_user_authentication", error_description="a fresh second factor is required", max_age=300`)
	}
	if status == fiber.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="regie"`)
		var wa interface{ WWWAuthenticate() string }
		if errors.As(err, &wa) {
			c.Set(fiber.HeaderWWWAuthenticate, wa.WWWAuthenticate())
		}
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, contentTypeFHIR)
	return c.Send(renderOutcome(issues, rid))
}
