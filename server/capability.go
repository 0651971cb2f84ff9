package server

import (
	"encoding/json"
	"time"

	"regie/fhir"
)

// Interactions the server supports on every resource type, and at system
// level. The CapabilityStatement is generated from these lists and the
// definitions; the tests exercise every interaction it lists.
var (
	typeInteractions   = []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"}
	systemInteractions = []string{"transaction", "batch", "history-system", "search-system"}
)

func (s *Server) capabilityStatement() ([]byte, error) {
	type code struct {
		Code string `json:"code"`
	}
	type param struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
		Type       string `json:"type"`
	}
	type resource struct {
		Type              string   `json:"type"`
		Profile           string   `json:"profile"`
		Interaction       []code   `json:"interaction"`
		Versioning        string   `json:"versioning"`
		ReadHistory       bool     `json:"readHistory"`
		UpdateCreate      bool     `json:"updateCreate"`
		ConditionalCreate bool     `json:"conditionalCreate"`
		ConditionalRead   string   `json:"conditionalRead"`
		ConditionalUpdate bool     `json:"conditionalUpdate"`
		ConditionalDelete string   `json:"conditionalDelete"`
		SearchInclude     []string `json:"searchInclude,omitempty"`
		SearchRevInclude  []string `json:"searchRevInclude,omitempty"`
		SearchParam       []param  `json:"searchParam,omitempty"`
	}
	codes := func(cs []string) []code {
		out := make([]code, len(cs))
		for i, c := range cs {
			out[i] = code{c}
		}
		return out
	}
	var resources []resource
	// the _revinclude values that name each type as a possible target
	revIncludes := map[string][]string{}
	for _, src := range s.eng.Definitions().ResourceTypes() {
		for _, p := range s.eng.SearchParams(src) {
			if p.Type != fhir.ParamReference {
				continue
			}
			for _, target := range p.Target {
				if target == "Resource" {
					continue
				}
				revIncludes[target] = append(revIncludes[target], src+":"+p.Code)
			}
		}
	}
	for _, t := range s.eng.Definitions().ResourceTypes() {
		var params []param
		var includes []string
		for _, p := range s.eng.SearchParams(t) {
			params = append(params, param{Name: p.Code, Definition: p.URL, Type: string(p.Type)})
			if p.Type == fhir.ParamReference {
				includes = append(includes, t+":"+p.Code)
			}
		}
		if len(includes) > 0 {
			includes = append(includes, t+":*")
		}
		resources = append(resources, resource{
			SearchParam:       params,
			SearchInclude:     includes,
			SearchRevInclude:  revIncludes[t],
			Type:              t,
			Profile:           "http://hl7.org/fhir/StructureDefinition/" + t,
			Interaction:       codes(typeInteractions),
			Versioning:        "versioned-update",
			ReadHistory:       true,
			UpdateCreate:      true,
			ConditionalCreate: true,
			ConditionalUpdate: true,
			ConditionalRead:   "not-supported",
			ConditionalDelete: "single",
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
