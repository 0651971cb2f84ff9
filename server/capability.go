package server

import (
	"encoding/json"
	"time"
)

// Interactions the server supports on every resource type, and at system
// level. The CapabilityStatement is generated from these lists and the
// definitions; the tests exercise every interaction it lists.
var (
	typeInteractions   = []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"}
	systemInteractions = []string{"transaction", "batch", "history-system"}
)

func (s *Server) capabilityStatement() ([]byte, error) {
	type code struct {
		Code string `json:"code"`
	}
	type resource struct {
		Type              string `json:"type"`
		Profile           string `json:"profile"`
		Interaction       []code `json:"interaction"`
		Versioning        string `json:"versioning"`
		ReadHistory       bool   `json:"readHistory"`
		UpdateCreate      bool   `json:"updateCreate"`
		ConditionalCreate bool   `json:"conditionalCreate"`
		ConditionalRead   string `json:"conditionalRead"`
		ConditionalUpdate bool   `json:"conditionalUpdate"`
		ConditionalDelete string `json:"conditionalDelete"`
	}
	codes := func(cs []string) []code {
		out := make([]code, len(cs))
		for i, c := range cs {
			out[i] = code{c}
		}
		return out
	}
	var resources []resource
	for _, t := range s.eng.Definitions().ResourceTypes() {
		resources = append(resources, resource{
			Type:              t,
			Profile:           "http://hl7.org/fhir/StructureDefinition/" + t,
			Interaction:       codes(typeInteractions),
			Versioning:        "versioned-update",
			ReadHistory:       true,
			UpdateCreate:      true,
			ConditionalRead:   "not-supported",
			ConditionalDelete: "not-supported",
		})
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         time.Now().UTC().Format("2006-01-02"),
		"publisher":    "Regie",
		"kind":         "instance",
		"software":     map[string]any{"name": "Regie", "version": s.cfg.Version},
		"implementation": map[string]any{
			"description": "Regie FHIR R4 server",
			"url":         s.fhirURL,
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"patchFormat": []string{"application/json-patch+json"},
		"rest": []map[string]any{{
			"mode":        "server",
			"resource":    resources,
			"interaction": codes(systemInteractions),
		}},
	}
	return json.Marshal(cs)
}
